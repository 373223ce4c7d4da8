"""explorer.html: one self-contained page to walk the latent space of a trained model
(see explorer/explorer.py; the page's HTML, CSS and JavaScript live beside it)."""

from deepae.explorer.explorer import FILE_NAME, build_explorer, decoder_layers, write_explorer

__all__ = ["FILE_NAME", "build_explorer", "decoder_layers", "write_explorer"]
