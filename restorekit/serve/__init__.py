"""`restorekit serve`: a local web page to try models, with the AdaFM strength slider (see app.py)."""
