"""The search page: a FastAPI server over one code index (app.py), its image thumbnails (images.py)
and a static HTML + JS page (static/) with no build step, started by scripts/search.py --serve;
see docs/search-page.md."""
