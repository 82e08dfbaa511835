"""Networks: timm backbones with multi-level features and hypercolumns (``backbones``), and
the heads, decoders and generators built on them."""
