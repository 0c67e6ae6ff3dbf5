"""The search page's JSON API (webui/app.py) with FastAPI's test client, and search.py --serve's start-up.

Most tests use an index made directly (random codes, no checkpoint: text and image queries are off);
text and image queries use a toy set of drawn shapes extracted with the tiny random CLIP, trained for
one epoch (make_toy_index, also the browser test's set).
"""
import io
import re
from urllib.parse import quote, urljoin

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("fastapi")
from fastapi.responses import JSONResponse  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import search_cli  # noqa: E402
from conftest import ROOT, TINY_CLIP  # noqa: E402
from hashindex.index_file import CodeIndex, load_index, save_index  # noqa: E402
from hashindex.query import SearchEngine  # noqa: E402
from webui.app import create_app  # noqa: E402

import build_index_cli  # noqa: E402

COLOURS = {"red": (214, 48, 49), "green": (39, 174, 96), "blue": (41, 98, 255), "yellow": (241, 196, 15)}
SHAPES = ("circle", "square", "triangle")


def make_toy_index(folder):
    """24 drawn shapes with captions -> extract_features.py (tiny random CLIP) -> one epoch of 16-bit
    training -> build_index.py: an index of 20 items with image paths, captions and labels, whose
    text and image queries work. Returns the index path."""
    import extract_features_cli
    import train

    images = folder / "images"
    images.mkdir(parents=True)
    lines = ["id,image,text,labels"]
    for i in range(24):
        colour, shape = list(COLOURS)[i % 4], SHAPES[(i // 4) % 3]
        picture = Image.new("RGB", (96, 96), (236, 238, 241) if i % 2 else (52, 58, 64))
        half = 21 + 3 * (i % 5)
        box = (48 - half, 48 - half, 48 + half, 48 + half)
        draw = ImageDraw.Draw(picture)
        if shape == "circle":
            draw.ellipse(box, fill=COLOURS[colour])
        elif shape == "square":
            draw.rectangle(box, fill=COLOURS[colour])
        else:
            draw.polygon([(48, box[1]), (box[2], box[3]), (box[0], box[3])], fill=COLOURS[colour])
        picture.save(images / f"{colour}-{shape}-{i}.png")
        background = "light" if i % 2 else "dark"
        lines.append(f"{colour}-{shape}-{i},{colour}-{shape}-{i}.png,a {colour} {shape} on a {background} "
                     f"background,{colour}|{shape}")
    (images / "pairs.csv").write_text("\n".join(lines) + "\n")
    data = folder / "data"
    extract_features_cli.main(["--manifest", str(images / "pairs.csv"), "--name", "shapes", "--data_root", str(data),
                               "--pretrained", "random", "--clip_model", TINY_CLIP, "--device", "cpu",
                               "--batch_size", "8", "--chunk_size", "8", "--workers", "0",
                               "--num_query", "4", "--num_train", "16"])
    train.main(["--dataset", "shapes", "--data_root", str(data), "--epoch", "1", "--hash_lens", "16",
                "--modality_dropout", "0", "--balanced_neighbours", "covariance",
                "--fusion_dim", "64", "--fusion_ff_dim", "64", "--hash_hidden", "32", "--unimodal_epochs", "1",
                "--eval_every", "0", "--checkpoint_dir", str(folder / "ck"), "--output_dir", str(folder / "runs")])
    return build_index_cli.main(["--checkpoint", str(folder / "ck" / "hash" / "shapes_hash_16.pth"),
                                 "--out", str(folder / "shapes.npz")])


_TOY = []   # the toy index's path, once made in this test session


def toy_index(tmp_path_factory):
    """The toy index, made once per session: this module and test_browser.py share it."""
    if not _TOY:
        _TOY.append(make_toy_index(tmp_path_factory.mktemp("toy")))
    return _TOY[0]


def client_of(app, **options):
    """FastAPI's test client as a browser on this machine sees the server (the Host header is checked)."""
    return TestClient(app, base_url="http://127.0.0.1:8000", **options)


def png_bytes(size=(40, 30), colour=(200, 30, 30)):
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """An index made directly: 40 items (one id with a slash and a space), 16-bit random codes, labels,
    captions, and image paths: a good one, one outside the image root by `..`, one by a symlink,
    one missing file, one not an image; no checkpoint, no encoder. Returns (client, index path, index)."""
    root = tmp_path_factory.mktemp("serve")
    pictures = root / "pictures"
    pictures.mkdir()
    (root / "secret.png").write_bytes(png_bytes())
    Image.new("RGB", (600, 300), (20, 120, 200)).save(pictures / "good.png")
    (pictures / "link.png").symlink_to(root / "secret.png")
    (pictures / "notimage.png").write_text("not an image")
    paths = [str(pictures / "good.png"), str(pictures / ".." / "secret.png"), str(pictures / "link.png"),
             str(pictures / "missing.png"), str(pictures / "notimage.png")] + [""] * 35
    rng = np.random.default_rng(0)
    codes = {m: rng.integers(0, 256, (40, 2), dtype=np.uint8) for m in ("image", "text")}
    ids = ["a", "dir/c d", *[f"x{i}" for i in range(2, 40)]]
    index = CodeIndex(bits=16, ids=ids, codes=codes, meta={"protocol": "unimodal", "image_root": str(pictures)},
                      labels=(rng.random((40, 3)) < 0.5).astype(np.uint8), label_names=["cat", "dog", "sky"],
                      captions=[f"caption {i}" for i in range(40)], image_paths=paths)
    save_index(root / "plain.npz", index)
    app = create_app(SearchEngine(load_index(root / "plain.npz"), root / "plain.npz"), max_k=50, max_upload_bytes=1000)
    return client_of(app), root / "plain.npz", index


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    path = toy_index(tmp_path_factory)
    return client_of(create_app(SearchEngine(load_index(path), path))), path


def test_info_says_what_the_index_holds_and_why_text_queries_are_off(plain):
    client, path, _ = plain
    info = client.get("/api/info").json()
    assert info["size"] == 40 and info["bits"] == 16 and info["protocol"] == "unimodal" and info["index"] == path.name
    assert info["label_names"] == ["cat", "dog", "sky"] and info["images"] and info["captions"]
    assert not info["text_queries"] and not info["image_queries"]
    assert "no CLIP encoder" in info["disabled_reason"] and info["first_id"] == "a"
    bare = CodeIndex(bits=8, ids=["p", "q"], codes={"image": np.array([[1], [2]], np.uint8),
                                                    "text": np.array([[3], [4]], np.uint8)})
    client = client_of(create_app(SearchEngine(bare, "bare.npz")))
    info = client.get("/api/info").json()
    assert info["label_names"] is None and not info["images"] and "no image paths" in info["images_reason"]
    found = client.get("/api/search", params={"id": "p"}).json()
    assert [r["distance"] for r in found["results"]] == [1, 2] and "labels" not in found["results"][0]
    assert found["precision_at_k"] is None and found["relevance"] == "no marks: the index has no labels"
    assert not any("relevant" in r for r in found["results"])



def test_an_index_of_one_modality_says_what_it_holds():
    one = CodeIndex(bits=8, ids=["a", "b"], codes={"image": np.array([[1], [2]], np.uint8)})
    client = client_of(create_app(SearchEngine(one, "one.npz")))
    for params in ({"id": "a"}, {"id": "a", "modality": "text", "target": "image"}):
        answer = client.get("/api/search", params=params)
        assert answer.status_code == 400 and answer.json()["detail"] == "the index holds no text codes (it has image)"
    assert client.get("/api/search", params={"id": "b", "target": "image"}).json()["results"][0]["id"] == "b"


def test_id_query_gives_the_command_lines_results_and_image_urls(plain, capsys):
    client, path, index = plain
    answer = client.get("/api/search", params={"id": "x7", "modality": "text", "target": "image", "k": 12})
    assert answer.status_code == 200
    found = answer.json()
    cli = search_cli.main(["--index", str(path), "--query_id", "x7", "--query_modality", "text",
                           "--target", "image", "--top_k", "12", "--json"])
    capsys.readouterr()
    with_urls = [r for r in found["results"] if "image_url" in r]
    assert [{k: v for k, v in r.items() if k not in ("image_url", "relevant")} for r in found["results"]] == cli["results"]
    assert {r["id"] for r in with_urls} <= {"a", "dir/c d", "x2", "x3", "x4"}
    assert all(r["image_url"] == "api/image/" + quote(r["id"], safe="") for r in with_urls)
    assert found["query"]["caption"] == "caption 7" and found["query"]["labels"] == cli["query"]["labels"]
    assert found["query"]["code"] == index.codes["text"][7].tobytes().hex()


def test_an_item_is_found_by_its_id_even_with_a_slash(plain):
    client, _, index = plain
    item = client.get("/api/item/" + quote("dir/c d", safe="")).json()
    assert item["row"] == 1 and item["caption"] == "caption 1"
    assert item["codes"]["image"] == index.codes["image"][1].tobytes().hex()
    assert item["labels"] == [n for n, on in zip(["cat", "dog", "sky"], index.labels[1]) if on]
    assert client.get("/api/search", params={"id": "dir/c d", "k": 3}).json()["query"]["id"] == "dir/c d"


@pytest.mark.parametrize("params, status, says", [
    ({"id": "nope"}, 404, "'nope' is not in the index"),
    ({"id": "a", "k": 0}, 422, "k must be between 1 and 50"),
    ({"id": "a", "k": 51}, 422, "k must be between 1 and 50"),
    ({"id": "a", "k": "many"}, 422, "k: Input should be a valid integer"),
    ({"id": "a", "modality": "sound"}, 422, "modality: Input should be 'image' or 'text'"),
    ({"text": "   "}, 422, "text is empty"),
    ({"text": "a dog"}, 400, "text queries are off: "),
    ({"text": "a dog", "id": "a"}, 400, "give one query"),
    ({}, 400, "give one query"),
])
def test_bad_requests_get_one_clear_line_and_the_server_stays_up(plain, params, status, says):
    client = plain[0]
    answer = client.get("/api/search", params=params)
    assert answer.status_code == status and says in answer.json()["detail"]
    assert "\n" not in answer.json()["detail"]
    assert client.get("/api/search", params={"id": "a"}).status_code == 200


def test_images_are_served_by_id_only_and_only_from_the_image_root(plain):
    client = plain[0]
    good = client.get("/api/image/a")
    assert good.status_code == 200 and good.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(good.content)) as thumbnail:
        assert thumbnail.format == "JPEG" and thumbnail.size == (256, 128)
    for item_id, status, says in ((quote("dir/c d", safe=""), 403, "outside the image folder"),   # ../secret.png
                                  ("x2", 403, "outside the image folder"),                        # symlink to it
                                  ("x3", 404, "is missing"), ("x4", 404, "is unreadable"),
                                  ("x5", 404, "has no image"),
                                  ("..%2Fsecret.png", 404, "is not in the index"),
                                  (quote(str(plain[1].parent / "secret.png"), safe=""), 404, "is not in the index")):
        answer = client.get(f"/api/image/{item_id}")
        assert answer.status_code == status and says in answer.json()["detail"], (item_id, answer.text)
    assert client.get("/api/image/../plain.npz").status_code == 404


def test_uploads_over_the_limit_are_refused_before_they_are_read(plain):
    client = plain[0]
    answer = client.post("/api/search", files={"image": ("big.png", b"x" * 2000)})
    assert answer.status_code == 413 and answer.json()["detail"] == "the upload is over the 0.000953674 MB limit " \
                                                                    "(--max_upload_mb)"
    chunks = iter([b"--b\r\n", b"x" * 600, b"x" * 600, b"x" * 600])   # no Content-Length: counted as it comes
    answer = client.post("/api/search", content=chunks, headers={"content-type": "multipart/form-data; boundary=b"})
    assert answer.status_code == 413 and "over the" in answer.json()["detail"]
    answer = client.post("/api/search", files={"image": ("small.png", png_bytes())})
    assert answer.status_code == 400 and answer.json()["detail"].startswith("image queries are off: ")


def test_the_page_and_its_files_load_nothing_from_elsewhere(plain):
    client = plain[0]
    page = client.get("/")
    assert page.status_code == 200 and "<title>UCMFH-PH search</title>" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    for name in ("index.html", "app.js", "style.css"):
        text = (ROOT / "webui" / "static" / name).read_text()
        assert client.get(f"/static/{name}").text == text
        assert not re.search(r"[a-z]+://|[\"'(]//|@import", text, re.I), f"{name} refers to another host"
    assert set(re.findall(r'(?:src|href)="([^"]+)"', page.text)) == {
        "static/style.css", "static/app.js", "openapi.json"}
    for cdn_page in ("/docs", "/redoc"):                       # FastAPI's would load scripts from a CDN
        assert client.get(cdn_page).status_code == 404


def test_the_openapi_schema_lists_the_api(plain):
    schema = plain[0].get("/openapi.json").json()
    assert {"/api/info", "/api/search", "/api/item/{item_id}", "/api/image/{item_id}", "/api/random"} <= \
        set(schema["paths"])
    assert {"get", "post"} <= set(schema["paths"]["/api/search"])


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "LOCALHOST:1", "127.0.0.1", "127.0.0.1:80",
                                  "[::1]", "[::1]:8000", "search.lan:8000"])
def test_requests_named_for_this_machine_or_the_given_host_are_answered(plain, host):
    app = create_app(plain[0].app.state.engine, hosts=["search.lan"])
    for path in ("/", "/api/info", "/static/app.js"):
        assert client_of(app).get(path, headers={"host": host}).status_code == 200, (host, path)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example",
                                  "localhost.evil.example:80", "[::1].evil.example", "localhost:80:80", "",
                                  "search.lan"])
def test_a_page_of_another_host_cannot_read_the_api(plain, host):
    """DNS rebinding: a page of evil.example whose name then resolves to 127.0.0.1 sends Host evil.example."""
    for method, path in (("GET", "/"), ("GET", "/api/info"), ("GET", "/api/search?id=a"), ("POST", "/api/search"),
                         ("GET", "/api/image/a"), ("GET", "/openapi.json")):
        answer = plain[0].request(method, path, headers={"host": host})
        assert answer.status_code == 400 and answer.headers["content-type"] == "application/json", (host, path)
        assert answer.json()["detail"].startswith(f"Host {host!r} is not this server's") and "\n" not in answer.text


def under_proxy_path(app, prefix):
    """A reverse proxy that serves `app` at `prefix`/ (and nothing else): it strips the prefix."""
    async def proxy(scope, receive, send):
        if scope["type"] == "http":
            if not scope["path"].startswith(prefix + "/"):
                return await JSONResponse({"detail": "not proxied"}, 404)(scope, receive, send)
            scope = dict(scope, path=scope["path"][len(prefix):], raw_path=scope["raw_path"][len(prefix):])
        return await app(scope, receive, send)
    return proxy


def test_the_page_and_its_image_urls_work_under_a_proxy_path(plain):
    client, page = client_of(under_proxy_path(plain[0].app, "/search")), "http://127.0.0.1:8000/search/"
    html = client.get(page).text
    for linked in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert client.get(urljoin(page, linked)).status_code == 200, linked
    found = client.get(urljoin(page, "api/search"), params={"id": "x7", "target": "image", "k": 40}).json()
    item = client.get(urljoin(page, "api/item/a")).json()
    urls = [r["image_url"] for r in found["results"] if "image_url" in r] + [item["image_url"]]
    assert len(urls) == 6 and not any(url.startswith("/") for url in urls)
    for url in urls:   # relative to the page, as app.js uses them
        assert client.get(urljoin(page, url)).status_code in (200, 403, 404)
    assert client.get(urljoin(page, item["image_url"])).headers["content-type"] == "image/jpeg"


def test_unexpected_errors_are_one_line_of_json_without_the_traceback(toy, monkeypatch):
    def broken(self, modality, features):   # as a torch kernel fails (a device error, out of memory)
        raise RuntimeError("CUDA error: device-side assert triggered\n  at /home/someone/secret/model.py:12")

    monkeypatch.setattr(SearchEngine, "_encode", broken)
    client = client_of(toy[0].app, raise_server_exceptions=False)
    for answer in (client.get("/api/search", params={"text": "a red circle"}),
                   client.post("/api/search", files={"image": ("q.png", png_bytes())})):
        assert answer.status_code == 500 and answer.headers["content-type"] == "application/json"
        detail = answer.json()["detail"]
        assert detail == "internal error (RuntimeError); the server's log has the details"
        assert "secret" not in answer.text and "Traceback" not in answer.text
    assert client.get("/api/search", params={"id": client.get("/api/info").json()["first_id"]}).status_code == 200


def test_serve_starts_on_localhost_only_after_the_index_loads(plain, tmp_path, capsys, monkeypatch):
    import uvicorn

    for argv, says in ((["--index", str(tmp_path / "absent.npz")], "no such file"),
                       (["--index", str(tmp_path / "bad.npz")], "not a readable .npz")):
        (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
        with pytest.raises(SystemExit) as stop:
            search_cli.main(["--serve", *argv])
        message = capsys.readouterr().err.strip()
        assert stop.value.code == 2 and message.startswith("error: ") and says in message and "\n" not in message
    with pytest.raises(SystemExit) as stop:
        search_cli.main(["--serve", "--index", str(plain[1]), "--query_id", "a"])
    assert stop.value.code == 2 and "--serve takes no --query_id" in capsys.readouterr().err
    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.update(options, app=app))
    search_cli.main(["--serve", "--index", str(plain[1])])
    assert started["host"] == "127.0.0.1" and started["port"] == 8000
    assert "on http://127.0.0.1:8000/" in capsys.readouterr().out
    assert client_of(started["app"]).get("/api/info").json()["size"] == 40
    search_cli.main(["--serve", "--index", str(plain[1]), "--host", "0.0.0.0", "--allow_host", "search.lan",
                     "--allow_host", "10.0.0.5"])
    for host, status in (("search.lan:8000", 200), ("10.0.0.5", 200), ("0.0.0.0:8000", 200), ("localhost", 200),
                         ("evil.example", 400)):
        assert TestClient(started["app"]).get("/api/info", headers={"host": host}).status_code == status, host


def test_text_and_image_queries_give_the_command_lines_codes(toy, capsys, monkeypatch):
    client, path = toy
    found = client.get("/api/search", params={"text": "a red circle", "k": 5}).json()
    cli = search_cli.main(["--index", str(path), "--text", "a red circle", "--top_k", "5", "--json"])
    capsys.readouterr()
    assert found["query"]["code"] == cli["query"]["code"] and found["target"] == "image"
    assert [{k: v for k, v in r.items() if k != "image_url"} for r in found["results"]] == cli["results"]
    assert found["precision_at_k"] is None and found["relevance"] == "no marks: a text query has no labels"
    assert all(r["caption"].startswith("a ") and r["labels"] for r in found["results"])
    assert client.get(found["results"][0]["image_url"]).headers["content-type"] == "image/jpeg"

    photo = load_index(path).image_paths[3]
    with open(photo, "rb") as handle:
        answer = client.post("/api/search", files={"image": ("q.png", handle, "image/png")}, data={"k": "3"})
    cli = search_cli.main(["--index", str(path), "--image", photo, "--top_k", "3", "--json"])
    capsys.readouterr()
    assert answer.json()["query"]["code"] == cli["query"]["code"] and answer.json()["target"] == "text"
    assert len(answer.json()["results"]) == 3 and answer.json()["query"]["image"] == "q.png"
    assert answer.json()["relevance"] == "no marks: an image query has no labels"

    # the encoders were loaded once, at start-up: a query never loads them again
    import hashindex.query

    def loads(*args):
        raise AssertionError("the query model was loaded again")

    monkeypatch.setattr(hashindex.query, "load_query_model", loads)
    monkeypatch.setattr(hashindex.query, "load_clip_encoder", loads)
    assert client.get("/api/search", params={"text": "a blue square"}).status_code == 200
    assert client.get("/api/search", params={"id": found["results"][0]["id"]}).status_code == 200


def test_bad_uploads_get_one_clear_line(toy, monkeypatch):
    client = toy[0]
    answer = client.post("/api/search", files={"image": ("notes.txt", b"just some text", "text/plain")})
    assert answer.status_code == 400 and answer.json()["detail"] == \
        "the upload notes.txt: not a readable image (UnidentifiedImageError)"
    monkeypatch.setattr("webui.app.MAX_PIXELS", 100)
    answer = client.post("/api/search", files={"image": ("wide.png", png_bytes((20, 20)))})
    assert answer.status_code == 400 and "20x20 pixels is over the limit" in answer.json()["detail"]
    answer = client.post("/api/search", files={"image": ("q.png", png_bytes())}, data={"k": "0"})
    assert answer.status_code == 422 and "k must be between 1 and 1000" in answer.json()["detail"]
    assert client.post("/api/search", data={"k": "3"}).json()["detail"] == "image: Field required"
    info = client.get("/api/info").json()
    assert info["text_queries"] and info["image_queries"] and info["disabled_reason"] is None and info["images"]


def test_encoders_that_do_not_fit_the_index_get_one_clear_line(toy, monkeypatch):
    from config import ConfigError

    def misfit(self, modality, features):
        raise ConfigError(f"ViT-X gives 768-d features but the model takes 512-d {modality} features")

    monkeypatch.setattr(SearchEngine, "_encode", misfit)
    answer = toy[0].get("/api/search", params={"text": "a red circle"})
    assert answer.status_code == 400 and answer.json()["detail"].endswith("takes 512-d text features")
    answer = toy[0].post("/api/search", files={"image": ("q.png", png_bytes())})
    assert answer.status_code == 400 and answer.json()["detail"].endswith("takes 512-d image features")
