"""GAN training: StyleGAN2 losses and regularisers with the training step and loop
(``losses``), adaptive discriminator augmentation (``ada``) and the Hierarchical Semantic
Regularizer of thesis Ch. 4 (``hsr``). The networks are in :mod:`ssl_lab.nets.stylegan2`."""
