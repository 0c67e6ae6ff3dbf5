"""The search page's server: a FastAPI app over one loaded code index (see docs/search-page.md).

    /                    the page (static/index.html; static/ holds its script and style sheet)
    GET  /api/info       the index's facts and which queries work
    GET  /api/search     ?text=... or ?id=...&modality=image|text, with &k= and &target=image|text
    POST /api/search     multipart: image=<file>, k, target
    GET  /api/item/{id}  an item's labels, caption and codes
    GET  /api/image/{id} a thumbnail of an item's image (indexes built from raw images)
    GET  /api/random     a random item's id, for the page's "Random item" button
    /openapi.json        FastAPI's OpenAPI schema (its interactive /docs page is off: it loads from a CDN)

Every error is JSON {"detail": "<one line>"} with its status code, an unexpected one too (500, its
traceback only in the server's log); a request whose Host header names neither this machine nor a
host given (`hosts`) gets 400, so a page of another site cannot read the API by DNS rebinding. Search
results are hashindex.query.SearchEngine's (the same as scripts/search.py --json) plus an image_url per
item, relative to the page's address, so the page works under a proxy's sub-path too, and, where the
index has labels and the query is an item, whether each result shares a label with it and P@k
(webui/relevance.py).
"""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from config import ConfigError
from data import DataError
from hashindex.query import OTHER, SearchEngine, decode_image
from webui.images import ImageStore
from webui.relevance import judge

STATIC = Path(__file__).resolve().parent / "static"
# the page may load nothing but this server's own files (and the preview of a chosen upload)
PAGE_POLICY = "default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'"
MAX_PIXELS = 50_000_000   # a small upload must not decode into gigabytes
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
# a Host header: a name, an IPv4 address or a bracketed IPv6 address, then an optional :port
HOST_HEADER = re.compile(r"(\[[0-9a-f:.]+\]|[^:\[\]/@\s]+)(?::[0-9]*)?")
Modality = Literal["image", "text"]


def one_line(exc: RequestValidationError) -> str:
    """FastAPI's list of validation errors as one line: 'k: Input should be a valid integer, ...'."""
    return "; ".join(f"{'.'.join(str(p) for p in error['loc'][1:]) or 'request'}: {error['msg']}"
                     for error in exc.errors())


class DeclaredSizeLimit:
    """ASGI middleware: a POST whose Content-Length is over the limit gets the JSON 413 at once, unread.
    (FastAPI's max_body_size on the route counts the bytes of the rest, chunked uploads included, but
    answers this case in plain text.)"""

    def __init__(self, app, max_bytes: int, detail: str):
        self.app, self.max_bytes, self.detail = app, max_bytes, detail

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            declared = dict(scope["headers"]).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.max_bytes:
                return await JSONResponse({"detail": self.detail}, 413)(scope, receive, send)
        return await self.app(scope, receive, send)


def host_name(host: str) -> str:
    """How a Host header's host is written, without the port: "::1" -> "[::1]", "Search.LAN" -> "search.lan"."""
    host = host.strip().lower()
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class HostCheck:
    """ASGI middleware: a request whose Host header is not one of `names` (any port) gets a JSON 400,
    unanswered. A page of another site whose name is re-pointed to this machine (DNS rebinding) sends
    its own name, so it cannot read the API though the browser deems the requests same-origin."""

    def __init__(self, app, names: set):
        self.app, self.names = app, names
        self.listed = ", ".join(sorted(names))

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            found = HOST_HEADER.fullmatch(header.lower())
            if not found or found.group(1) not in self.names:
                detail = f"Host {header!r} is not this server's: it answers to {self.listed} (--host, --allow_host)"
                return await JSONResponse({"detail": detail}, 400)(scope, receive, send)
        return await self.app(scope, receive, send)


def create_app(engine: SearchEngine, *, max_k: int = 1000, default_k: int = 20,
               max_upload_bytes: int = 10 * 2**20, hosts=(), draw: random.Random | None = None) -> FastAPI:
    """The app over `engine`. Its searchers, id map and query encoders are made here, once: an index
    whose encoders cannot load (no CLIP encoder recorded, no checkpoint) answers id queries only.
    Requests must name this machine (LOCAL_HOSTS) or one of `hosts` in their Host header. `draw` picks
    /api/random's items (a fresh random.Random by default; tests pass a seeded one)."""
    draw = draw or random.Random()
    engine.prepare()
    try:
        engine.encoders()
        disabled = None
    except (ConfigError, DataError, ImportError) as err:
        disabled = str(err)
    images = ImageStore(engine.index)
    index = engine.index
    upload_limit = f"the upload is over the {max_upload_bytes / 2**20:g} MB limit (--max_upload_mb)"

    # no /docs or /redoc: FastAPI's interactive pages fetch their scripts from a CDN, and nothing here
    # may load from the internet; /openapi.json is the same API, machine-readable
    app = FastAPI(title="UCMFH-PH search", version="1", docs_url=None, redoc_url=None,
                  description="Cross-modal Hamming search over one code index; see docs/search-page.md.")
    app.add_middleware(DeclaredSizeLimit, max_bytes=max_upload_bytes, detail=upload_limit)
    app.add_middleware(HostCheck, names={*LOCAL_HOSTS, *map(host_name, hosts)})   # outermost: checked first
    app.state.disabled_reason, app.state.engine = disabled, engine

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        detail = upload_limit if exc.status_code == 413 else str(exc.detail)
        return JSONResponse({"detail": detail}, exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc):
        return JSONResponse({"detail": one_line(exc)}, 422)

    @app.exception_handler(Exception)
    async def unexpected(request, exc):
        # a bug or a failing kernel: the client learns only its kind, the log (uvicorn's, after this
        # answer is sent) has the traceback, and the server goes on serving
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); the server's log has the details"}, 500)

    def row_of(item_id: str) -> int:
        try:
            return index.row_of(item_id)
        except KeyError as err:
            raise HTTPException(404, err.args[0]) from None

    def check_k(k: int) -> None:
        if not 1 <= k <= max_k:
            raise HTTPException(422, f"k must be between 1 and {max_k} (--max_k), got {k}")

    def check_encoders(what: str) -> None:
        if disabled:
            raise HTTPException(400, f"{what} queries are off: {disabled}")

    def encode(encoder, query):
        """The code of a text or an image; 400 when the encoders do not fit the index."""
        try:
            return encoder(query)
        except (ConfigError, DataError) as err:   # e.g. the CLIP model's feature size is not the model's
            raise HTTPException(400, str(err)) from None

    def with_image(facts: dict, row: int) -> dict:
        if images.has_image(row):
            # relative to the page (the server's root, or a proxy's sub-path), as app.js resolves it
            facts["image_url"] = f"api/image/{quote(str(index.ids[row]), safe='')}"
        return facts

    def check_modality(modality: str) -> None:
        if modality not in index.codes:
            raise HTTPException(400, f"the index holds no {modality} codes (it has {', '.join(sorted(index.codes))})")

    def run(code, modality: str, k: int, target: str | None, asked: dict, query_row: int | None = None) -> dict:
        check_modality(target or OTHER[modality])
        found = engine.search(code, modality, k, target, asked)
        for result in found["results"]:
            with_image(result, result["row"])
        return judge(found, index, query_row, f"{'a text' if 'text' in asked else 'an image'} query has no labels")

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_POLICY})

    @app.get("/favicon.ico", include_in_schema=False)
    def no_icon():
        return Response(status_code=204)   # browsers ask for one; an empty answer keeps their console clean

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/info")
    def info() -> dict:
        """What the page needs to know: the index's facts, and which queries and images it has."""
        return {"index": Path(engine.index_path).name, "size": index.size, "bits": index.bits,
                "protocol": index.meta.get("protocol"), "dataset": index.meta.get("dataset"),
                "split": index.meta.get("split"), "modalities": sorted(index.codes),
                "search": {m: engine.searcher(m).describe() for m in sorted(index.codes)},
                "text_queries": disabled is None, "image_queries": disabled is None, "disabled_reason": disabled,
                "images": images.available, "images_reason": images.reason,
                "captions": index.captions is not None, "label_names": engine.label_names,
                "first_id": str(index.ids[0]) if index.size else None,
                "k": {"default": min(default_k, max_k), "max": max_k}, "max_upload_bytes": max_upload_bytes}

    @app.get("/api/search")
    def search(text: str | None = Query(None, description="a text query"),
               item_id: str | None = Query(None, alias="id", description="an item id: its stored code is the query"),
               modality: Modality = Query("image", description="with id: the item's image code or its text code"),
               k: int = Query(default_k, description="number of results"),
               target: Modality | None = Query(None, description="modality searched (default: the other one)")):
        """Search by text or by an item's stored code."""
        check_k(k)
        if (text is None) == (item_id is None):
            raise HTTPException(400, "give one query: text=... or id=...")
        if item_id is not None:
            row = row_of(item_id)
            check_modality(modality)
            asked = with_image({"id": item_id, **engine.describe(row)}, row)
            return run(engine.item_code(item_id, modality), modality, k, target, asked, row)
        if not text.strip():
            raise HTTPException(422, "text is empty: type a few words")
        check_encoders("text")
        return run(encode(engine.text_code, text), "text", k, target, {"text": text})

    @app.post("/api/search", max_body_size=max_upload_bytes)
    def search_image(image: UploadFile = File(..., description="the query image"), k: int = Form(default_k),
                     target: Modality | None = Form(None)):
        """Search by an uploaded image (the body is refused with 413 past the size limit, unread)."""
        check_k(k)
        check_encoders("image")
        try:
            picture = decode_image(image.file, f"the upload {image.filename or ''}".strip(), MAX_PIXELS)
        except DataError as err:
            raise HTTPException(400, str(err)) from None
        return run(encode(engine.image_code, picture), "image", k, target, {"image": image.filename})

    @app.get("/api/random")
    def random_item() -> dict:
        """The id of an item drawn at random, uniformly: the page's "Random item" searches with it."""
        if not index.size:
            raise HTTPException(404, "the index is empty: there is no item to draw")
        return {"id": str(index.ids[draw.randrange(index.size)])}

    @app.get("/api/item/{item_id:path}")
    def item(item_id: str) -> dict:
        """An item's labels, caption, image URL and packed codes (hex)."""
        row = row_of(item_id)
        codes = {m: index.codes[m][row].tobytes().hex() for m in sorted(index.codes)}
        return with_image({"id": item_id, "row": row, **engine.describe(row), "codes": codes}, row)

    @app.get("/api/image/{item_id:path}", response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}}, 404: {}, 403: {}})
    def image(item_id: str):
        """A JPEG thumbnail of an item's image, read only from the index's image folder."""
        row = row_of(item_id)
        try:
            thumbnail = images.thumbnail(row)
        except LookupError as err:
            raise HTTPException(404, f"item {item_id!r} has no image: {err.args[0]}") from None
        except PermissionError as err:
            raise HTTPException(403, f"item {item_id!r}: {err}") from None
        return Response(thumbnail, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    return app
