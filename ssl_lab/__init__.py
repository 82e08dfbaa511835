"""ssl_lab: the package behind the ssl-lab book (LEAD, HSR, ALS and related papers)."""
import warnings

# tqdm.auto falls back to text bars when ipywidgets is absent (it is, on purpose: widgets would
# pull scripts from a CDN into the book); its warning about that is noise in every chapter.
warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"
