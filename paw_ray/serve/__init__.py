"""Using a trained run: loading it (``loading``), ``predict`` on images, batch inference
with Ray Data (``batch``), ``export`` of the whole cascade and its ``model_card``, a
self-contained ``model_folder``, and the HTTP service on Ray Serve (``http``)."""
