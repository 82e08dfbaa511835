"""Self-supervised objectives: BYOL (LEAD stage 1, ``byol``), MoCo v2 (the ContrastLandmarks
stage 1, ``moco``), their shared two-view augmentation (``augment``) and training loop
(``train.train_ssl``); DINO (``dino``); LEAD stage 2 (``lead``) and its baselines (``equivariance``)."""
