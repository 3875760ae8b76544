#!/usr/bin/env python3
"""The operator's page of cudainfer-run in headless Chromium, end to end.

Starts the service (its binary is the first argument) with a token and two
looping file cameras (dog.jpg made into a short 640x480 clip), drives
Debian's Chromium through chromedriver's WebDriver HTTP API with the Python
standard library alone, and checks: the login form takes the token; two
tiles show frames whose boxes sit where the JSON lines put the objects
(pixels of the screenshot on the box edges have the box's class colour);
a camera added from the page whose file is broken shows its error state;
removing a camera from the page removes its tile and the camera.

Exit 77 (meson's skip) without chromium or chromedriver, unless $CI is set,
where their absence is a failure. `--save PATH` keeps the screenshot.
"""
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
TOKEN = "operator-view-test-token-0123"
# inferoverlay's colours by class id (overlay/layout.rs), for the classes
# the dog picture shows.
PALETTE = {1: (60, 180, 75), 2: (255, 225, 25), 15: (170, 255, 195), 16: (128, 128, 0)}


def shared_dir():
    for d in (os.environ.get("CUDAINFER_SHARED_DIR"), os.path.join(ROOT, "..", "shared"), "/work/shared"):
        if d and os.path.exists(os.path.join(d, "models", "yolox_nano.onnx")):
            return d
    sys.exit("test data not found: set CUDAINFER_SHARED_DIR")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, timeout, check, every=0.25):
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(every)


def png_pixels(data):
    """(width, height, rows of RGB tuples) of an 8-bit RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = previous[i]
            c = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        rows.append(line)
        previous = line
    return width, height, [[tuple(r[x * channels:x * channels + 3]) for x in range(width)] for r in rows]


class WebDriver:
    def __init__(self, port, profile):
        self.base = f"http://127.0.0.1:{port}"
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            # The flags Chromium needs on a closed machine as root.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1280,1100", "--force-device-scale-factor=1",
                     "--user-data-dir=" + profile]}}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as reply:
            return json.load(reply)["value"] if path != "/session" else json.load(reply)["value"]

    def s(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def script(self, source, *args):
        return self.s("POST", "/execute/sync", {"script": source, "args": list(args)})

    def find(self, css):
        found = self.s("POST", "/elements", {"using": "css selector", "value": css})
        return [list(e.values())[0] for e in found]

    def click(self, css):
        (element,) = self.find(css)
        self.s("POST", f"/element/{element}/click", {})

    def type(self, css, text):
        (element,) = self.find(css)
        self.s("POST", f"/element/{element}/value", {"text": text})

    def close(self):
        try:
            self.s("DELETE", "")
        except Exception:
            pass


def last_results(path, camera):
    with open(path) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    mine = [line for line in lines if line["source"] == camera]
    return mine[-1] if mine else None


def edge_matches(pixels, box, rect, frame, colour):
    """Share of points on the box's left and right edges, mapped into the
    screenshot, with a pixel of `colour` within 3 pixels."""
    sx, sy = rect["width"] / frame["width"], rect["height"] / frame["height"]
    hits = total = 0
    for edge_x in (box["x"], box["x"] + box["w"]):
        for k in range(2, 9):
            fy = box["y"] + box["h"] * k / 10
            x, y = round(rect["x"] + edge_x * sx), round(rect["y"] + fy * sy)
            near = (pixels[y][x + d] for d in range(-3, 4) if 0 <= x + d < len(pixels[y]))
            total += 1
            hits += any(sum((a - b) ** 2 for a, b in zip(p, colour)) < 60 ** 2 for p in near)
    return hits / total


def main():
    args = sys.argv[1:]
    save = None
    if "--save" in args:
        i = args.index("--save")
        save = args[i + 1]
        del args[i:i + 2]
    binary = args[0] if args else os.path.join(ROOT, "build", "cargo-target", "release", "cudainfer-run")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            sys.exit("chromium and chromedriver are needed in CI (scripts/setup-deps.sh installs them)")
        print("SKIP: no chromium/chromedriver (apt install chromium chromium-driver)")
        sys.exit(77)
    shared = shared_dir()
    tmp = tempfile.mkdtemp(prefix="operator-view-")
    procs = []
    web = None
    try:
        clips = []
        for name in ("yard", "porch"):
            clip = os.path.join(tmp, name + ".mkv")
            subprocess.run(["gst-launch-1.0", "-q", "filesrc", "location=" + os.path.join(shared, "media", "dog.jpg"),
                            "!", "jpegdec", "!", "videoconvert", "!", "videoscale", "!",
                            "video/x-raw,width=640,height=480", "!", "imagefreeze", "num-buffers=25", "!",
                            "video/x-raw,framerate=5/1", "!", "jpegenc", "!", "matroskamux", "!",
                            "filesink", "location=" + clip], check=True)
            clips.append(clip)
        broken = os.path.join(tmp, "broken.mp4")
        with open(broken, "wb") as f:
            f.write(b"\x00\x00\x00\x18ftypisom" + os.urandom(4096))
        token_file = os.path.join(tmp, "token")
        with open(token_file, "w") as f:
            f.write(TOKEN)
        results = os.path.join(tmp, "results.jsonl")
        env = dict(os.environ)
        env.setdefault("ORT_DYLIB_PATH", os.path.join(ROOT, ".ort", "libonnxruntime.so"))
        port = free_port()
        log = open(os.path.join(tmp, "service.log"), "w")
        service = subprocess.Popen(
            [binary, "--model", os.path.join(shared, "models", "yolox_nano.onnx"),
             "--labels", os.path.join(shared, "models", "coco-labels.txt"), "--json", results,
             "--http", f"127.0.0.1:{port}", "--token-file", token_file, "--allow-dir", tmp]
            + ["file://" + c for c in clips], stdout=subprocess.DEVNULL, stderr=log, env=env)
        procs.append(service)
        base = f"http://127.0.0.1:{port}"

        def api(path):
            req = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + TOKEN})
            with urllib.request.urlopen(req, timeout=10) as reply:
                return json.load(reply)

        def listed():
            try:
                return api("/cameras")
            except OSError:
                return None

        cameras = wait_for("the API", 60, listed)
        ids = [c["id"] for c in cameras]
        assert len(ids) == 2, cameras
        wait_for("both cameras running", 120,
                 lambda: all(c["state"] == "running" for c in (listed() or [{"state": ""}])))

        dport = free_port()
        procs.append(subprocess.Popen([driver, f"--port={dport}"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        wait_for("chromedriver", 30, lambda: _answers(dport))
        profile = os.path.join(tmp, "profile")
        web = WebDriver(dport, profile)
        web.s("POST", "/url", {"url": base + "/"})

        # No token yet: the page loads (its files need none) and asks for it.
        wait_for("the login form", 20, lambda: web.script("return !document.getElementById('login').hidden"))
        assert web.script("return document.getElementById('tiles').children.length") == 0
        web.type("#token", TOKEN)
        web.click("#login-form button[type=submit]")
        in_url = web.script("return location.href")
        assert TOKEN not in in_url, in_url

        def frames_shown():
            counts = web.script("return [...document.querySelectorAll('#tiles .tile')]"
                                ".map(t => [t.dataset.camera, Number(t.dataset.frames || 0)])")
            return len(counts) == 2 and all(n >= 3 for _, n in counts) and counts

        print("tiles with frames:", wait_for("two tiles with frames", 60, frames_shown))

        # A camera whose file is broken, added from the page's form.
        web.type("#add-uri", "file://" + broken)
        web.click("#add-form button[type=submit]")
        failing = wait_for("the broken camera's tile in its error state", 60, lambda: web.script(
            "const t = [...document.querySelectorAll('#tiles .tile.state-retrying')]"
            ".find(t => t.querySelector('.error-text').textContent.startsWith('Last error:'));"
            "return t ? [t.dataset.camera, t.querySelector('.error-text').textContent] : null"))
        print("error state shown:", failing)

        # Let the snapshots refresh once more, then compare the screenshot
        # with where the JSON lines put the objects.
        time.sleep(1.5)
        png = base64.b64decode(web.s("GET", "/screenshot"))
        if save:
            os.makedirs(os.path.dirname(os.path.abspath(save)), exist_ok=True)
            with open(save, "wb") as f:
                f.write(png)
        _, _, pixels = png_pixels(png)
        for camera in ids:
            rect = web.script(
                "const r = document.querySelector(`[data-camera='${arguments[0]}'] .snapshot`)"
                ".getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, height: r.height}", camera)
            result = last_results(results, camera)
            checked = 0
            for obj in result["objects"]:
                colour = PALETTE.get(obj["class_id"])
                # Sure objects only: the dog, near 0.5, is a cat in some
                # frames, and the frame shown is not always the JSON's last.
                if obj["confidence"] < 0.75 or colour is None:
                    continue
                share = edge_matches(pixels, obj["box"], rect, result["frame"], colour)
                print(f"{camera}: {obj['label']} ({obj['confidence']:.2f}) edges in its colour: {share:.0%}")
                assert share >= 0.7, (camera, obj, share)
                checked += 1
            assert checked >= 1, (camera, result["objects"])

        # Removing a camera from the page removes its tile and the camera.
        gone = ids[0]
        web.click(f"[data-camera='{gone}'] button.remove")
        wait_for("the removed tile to go", 20, lambda: not web.find(f"[data-camera='{gone}']"))
        assert gone not in [c["id"] for c in api("/cameras")]
        time.sleep(2.5)  # two list polls: it does not come back
        assert not web.find(f"[data-camera='{gone}']")
        left = web.script("return [...document.querySelectorAll('#tiles .tile')].map(t => t.dataset.camera)")
        print("tiles after the removal:", left)
        assert gone not in left and ids[1] in left
        print("ok")
    except BaseException:
        with open(os.path.join(tmp, "service.log")) as f:
            print("service log (tail):", *f.readlines()[-30:], sep="\n", file=sys.stderr)
        raise
    finally:
        if web:
            web.close()
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def _answers(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
