"""The pipeline's stages, one module each (which stage lives where: ``train.stage_table``).

Ray Train stages (``frl``; ``hint`` and ``whole`` in ``student``; ``fusion`` and
``finetune`` in ``paw``) provide ``build_task``, the ``TrainTask`` the shared epoch loop
trains; ``localize`` (a Ray Data actor-pool pass), ``parts`` (a fan-out of 40 Ray tasks)
and ``evaluate`` (a Ray Data pass that writes the results tables) provide ``run_stage``.
"""
