#!/usr/bin/env python3
"""Writes the fuzzers' seed corpus (corpus/<target>/) in the targets' input
format (fuzz/src/lib.rs Reader): real shapes of YOLOX-nano and its exports,
the edge cases the product refuses, the first lines of COCO's labels, and
cudainfer-run's API requests and camera URIs (hostile ones included).
Run from anywhere: python3 fuzz/make_seeds.py"""
import math
import os
import shutil
import struct

here = os.path.dirname(os.path.abspath(__file__))


def shape(dims):
    return bytes([len(dims)]) + b"".join(struct.pack("<q", d) for d in dims)


def string(s):
    b = s.encode()
    return bytes([len(b)]) + b


def f32(*values):
    return b"".join(struct.pack("<f", v) for v in values)


def yolox(inp, out, thr=0.3, nms=0.45, max_det=300, values=(), matching=False):
    return (bytes([1 if matching else 0]) + shape(inp) + shape(out) + f32(thr, nms)
            + struct.pack("<H", max_det) + f32(*values))


# One real-looking row (px, py, log w, log h, objectness, class scores).
ROW = (0.5, 0.25, 0.0, math.log(2), 0.9, 0.1, 0.8)
ODD = (math.nan, math.inf, -math.inf, -0.0, 1e30, -1e30, 0.95, 1.0)

YOLOX = {
    "nano_416": yolox([1, 3, 416, 416], [1, 3549, 85], values=ROW),
    "small_64": yolox([1, 3, 64, 64], [1, 84, 7], values=ROW),
    "dynamic_640": yolox([-1, 3, 640, 640], [-1, 8400, 85], values=ODD),
    "matching_rows_zero_threshold": yolox([1, 3, 32, 96], [1, 0, 6], thr=0.0, max_det=65535,
                                          values=(0.1, 0.2, 0.0, 0.0, 1.0, 1.0), matching=True),
    "nan_thresholds": yolox([1, 3, 64, 64], [1, 84, 6], thr=math.nan, nms=math.nan, values=ODD),
    "symbolic_size": yolox([1, 3, -1, -1], [1, 3549, 85]),
    "not_multiple_of_32": yolox([1, 3, 400, 416], [1, 3549, 85]),
}


def value(name, kind, dims=None, text=""):
    out = string(name) + bytes([kind])
    if kind == 4:
        out += string(text)
    if kind <= 4:
        return out + shape(dims)
    return out + string(text)


def model(inputs, outputs):
    return bytes([len(inputs), len(outputs)]) + b"".join(inputs) + b"".join(outputs)


IMAGES = value("images", 0, [1, 3, 416, 416])
OUTPUT = value("output", 0, [1, 3549, 85])
MODEL = {
    "yolox_nano": model([IMAGES], [OUTPUT]),
    "dynamic_batch": model([value("images", 0, [-1, 3, 640, 640])], [value("output", 0, [-1, 8400, 85])]),
    "two_inputs": model([IMAGES, value("other", 0, [1])], [OUTPUT]),
    "float16_output": model([IMAGES], [value("output", 1, [1, 3549, 85])]),
    "named_element": model([value("images", 4, [1, 3, 416, 416], "bfloat16")], [OUTPUT]),
    "sequence_output": model([IMAGES], [value("output", 5, text="Sequence<Tensor<f32>>")]),
    "huge_input": model([value("images", 0, [1, 3, 8192, 8192])], [OUTPUT]),
    "two_outputs": model([IMAGES], [OUTPUT, value("aux", 2, [1, 10])]),
}

def yolov8(inp, out, thr=0.25, nms=0.45, max_det=300, values=(), matching=False):
    return yolox(inp, out, thr, nms, max_det, values, matching)


# One anchor's channels (cx, cy, w, h, class scores), cycled channel-major.
YOLOV8 = {
    "yolov12n_640": yolov8([1, 3, 640, 640], [1, 84, 8400], values=(320, 240, 50, 80, 0.9, 0.1)),
    "small_64": yolov8([1, 3, 64, 64], [1, 6, 84], values=(32, 32, 8, 8, 0.5, 0.7)),
    "dynamic_batch": yolov8([-1, 3, 320, 320], [-1, 84, 2100], values=ODD),
    "matching_anchors": yolov8([1, 3, 96, 32], [1, 5, 0], thr=0.0, max_det=65535,
                               values=(1.0, 2.0, 3.0, 4.0, 0.5), matching=True),
    "nan_thresholds": yolov8([1, 3, 64, 64], [1, 6, 84], thr=math.nan, nms=math.nan, values=ODD),
    "four_channels": yolov8([1, 3, 64, 64], [1, 4, 84]),
    "symbolic_size": yolov8([1, 3, -1, -1], [1, 84, 8400]),
    # Its first find: a class count whose output size overflowed.
    "overflowing_class_count": yolov8([1, 3, 96, 32], [1, 0x2222222222222241, 5], thr=0.45,
                                      max_det=65535, values=(1.0, 2.0, 3.0, 4.0, 0.5),
                                      matching=True),
}

ULTRAFACE_PRIORS = "strides=8,16,32,64;min-sizes=10,16,24/32,48/64,96/128,192,256;variances=0.1,0.2"


def ssd(flags, inp, scores, boxes, priors="", thr=0.7, nms=0.3, max_det=300, values=()):
    return (bytes([flags]) + string(priors) + shape(inp) + shape(scores) + shape(boxes)
            + f32(thr, nms) + struct.pack("<H", max_det) + f32(*values))


# A face prior (background, face) and its box: decoded corners, or regressions.
FACE = (0.1, 0.9)
SSD = {
    "ultraface_decoded": ssd(0, [1, 3, 240, 320], [1, 4420, 2], [1, 4420, 4],
                             values=FACE + (0.2, 0.3, 0.4, 0.6)),
    "ultraface_raw": ssd(1, [1, 3, 240, 320], [1, 4420, 2], [1, 4420, 4], ULTRAFACE_PRIORS,
                         values=FACE + (0.5, -0.5, 1.0, -1.0)),
    "raw_default_priors_matching": ssd(3, [1, 3, 64, 64], [1, 0, 3], [1, 0, 4], thr=0.0,
                                       values=(0.2, 0.3, 0.5, 0.0, 0.0, 0.0, 0.0)),
    "raw_custom_priors_matching": ssd(3, [1, 3, 32, 48], [1, 0, 2], [1, 0, 4],
                                      "strides=16;min-sizes=8,16;variances=0.2,0.1",
                                      values=ODD),
    "unnamed_boxes_first": ssd(14, [1, 3, 64, 64], [1, 0, 2], [1, 0, 4], values=FACE + (0, 0, 1, 1)),
    "bad_priors": ssd(1, [1, 3, 240, 320], [1, 4420, 2], [1, 4420, 4], "strides=0;sizes=x"),
    "nan_thresholds": ssd(2, [1, 3, 64, 64], [1, 0, 2], [1, 0, 4], thr=math.nan, nms=math.nan,
                          values=ODD),
    "one_class": ssd(0, [1, 3, 64, 64], [1, 10, 1], [1, 10, 4]),
}


def classifier(activation, top_k, inp, out, thr=0.0, max_det=300, values=()):
    return (bytes([activation]) + struct.pack("<H", top_k) + shape(inp) + shape(out)
            + f32(thr) + struct.pack("<H", max_det) + f32(*values))


CLASSIFIER = {
    "mobilenet_logits": classifier(0, 5, [1, 3, 224, 224], [1, 1001], values=(1.0, 3.5, -2.0, 0.5)),
    "probabilities": classifier(0, 3, [1, 3, 224, 224], [1, 4], values=(0.1, 0.6, 0.2, 0.1)),
    "softmax_huge_logits": classifier(1, 10, [1, 3, 64, 64], [1, 8],
                                      values=(3e38, -3e38, 0.0, 1e30, -1e30, 7.0, 7.0, 7.0)),
    "none_odd": classifier(2, 65535, [-1, 3, 32, 32], [-1, 16], thr=-1.0, values=ODD),
    "ties_top_k_zero": classifier(1, 0, [1, 3, 32, 32], [1, 4], values=(2.0, 2.0, 2.0, 2.0)),
    "nan_threshold": classifier(0, 2, [1, 3, 32, 32], [1, 3], thr=math.nan, values=ODD),
    "rank_three_output": classifier(0, 1, [1, 3, 32, 32], [1, 10, 1]),
    # Many classes, many kept: the checks must stay linear in the classes
    # (once they took 28 s here and CI's fuzzing timed out).
    "many_classes_many_kept": classifier(1, 65535, [1, 3, 64, 64], [1, 459016], thr=1e-9,
                                         max_det=65535, values=(1.0, 2.0, 3.0)),
}

coco = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck"]
LABELS = {
    "coco_first_lines": "".join(f"{n}\n" for n in coco).encode(),
    "blank_and_crlf": b"person\r\n\r\n  car \r\nbus\n\n\n",
    "no_final_newline": b"traffic light\nfire hydrant",
    "not_utf8": b"person\n\xff\xfe\ncar\n",
    "empty": b"",
}

# cudainfer-run's API: a byte whose low bit gives the API a token and whose
# next bit opens /metrics ("0" to "3"), then the request as text
# (api_request.rs).
TOKEN = "Tk7-fuzz-token-x9Q2z"
LOCAL = "Host: 127.0.0.1:8080\n"
BEARER = f"Authorization: Bearer {TOKEN}\n"
JSON = "Content-Type: application/json\n"


def request(token, first_line, headers="", body="", open_metrics=False):
    flags = str(int(token) + 2 * int(open_metrics))
    return (flags + f"{first_line}\n{headers}\n{body}").encode()


def add(body, token=False, headers=LOCAL + JSON):
    return request(token, "POST /cameras", (BEARER if token else "") + headers, body)


API = {
    "list_local": request(False, "GET /cameras", LOCAL),
    "page_no_token": request(True, "GET /", "Host: cam-host:8080\n"),
    "page_script": request(True, "GET /ui/app.js?v=2", "Host: cam-host:8080\n"),
    "page_post": request(False, "POST /ui/app.css", LOCAL),
    "snapshot_token": request(True, "GET /cameras/gate-north/snapshot.jpg?width=320", BEARER),
    "snapshot_no_bearer": request(True, "GET /cameras/gate-north/snapshot.jpg?width=320"),
    "snapshot_huge_width": request(False, "GET /cameras/cam-1/snapshot.jpg?a=1&width=99999#x", LOCAL),
    "snapshot_bad_width": request(False, "GET /cameras/cam-1/snapshot.jpg?width=-1", LOCAL),
    "snapshot_delete": request(False, "DELETE /cameras/cam-1/snapshot.jpg", LOCAL),
    "add_local": add('{"uri": "rtsp://10.0.0.5:554/stream1", "loop": false}'),
    "add_password_token": add('{"uri": "rtsp://admin:hunter2-secret@cam.local:554/s"}', token=True,
                              headers="Host: cam-host:8080\n" + JSON),
    "add_password_slash": add('{"uri": "rtsp://admin:secret/pass@10.0.0.5:554/s"}'),
    "add_password_encoded": add('{"uri": "rtsp://admin:s3cr%2Ft%40x@[fd00::5]:8554/live"}'),
    "add_password_bad_port": add('{"uri": "rtsp://operator:longpassword@cam:99999/x"}'),
    "add_password_extra_field": add('{"uri": "rtsp://admin:secretpass@h/x", "extra": 1}'),
    "add_password_escaped": add('{"uri": "rtsp:\\/\\/admin:esc\\u0061ped-pw@h\\/x"}'),
    "add_as_array": add('["rtsp://viewer:array-pass@h/x", true]'),
    "add_file": add('{"uri": "file:///videos/a@b.mp4", "loop": true}'),
    "huge_content_length": add("{}", headers=LOCAL + JSON + "Content-Length: 18446744073709551616\n"),
    "rebind_host": add('{"uri": "rtsp://h/x"}', headers="Host: rebind.evil\n" + JSON),
    "foreign_origin": add('{"uri": "rtsp://h/x"}', headers=LOCAL + JSON + "Origin: http://evil\n"),
    "text_plain_post": add("uri=rtsp://h/x", headers=LOCAL + "Content-Type: text/plain\n"),
    "padded_id": request(False, "DELETE /cameras/cam-01", LOCAL),
    "two_hosts": request(False, "GET /metrics", LOCAL + LOCAL),
    "ipv6_loopback": request(False, "GET /cameras/cam-3/", "Host: [::1]:8080\nOrigin: http://[::1]:8080\n"),
    "put_metrics": request(False, "PUT /metrics?x=1", LOCAL),
    "token_any_host": request(True, "GET /cameras/cam-7", BEARER + "Host: rebind.evil\n"),
    "wrong_token": request(True, "GET /metrics", f"Authorization: Bearer {TOKEN.upper()}\n"),
    "lowercase_bearer": request(True, "GET /metrics", f"authorization: bearer {TOKEN}\n"),
    "add_query_password": add('{"uri": "rtsp://cam.local/live?user=admin&pwd=query-secret9"}',
                              token=True, headers=JSON),
    "no_bearer": request(True, "POST /cameras", JSON, '{"uri": "rtsp://h/x"}'),
    "named_id": request(True, "DELETE /cameras/gate-north_2", BEARER),
    "probe_no_token": request(True, "GET /readyz?verbose=1", "Host: 10.0.0.7:8080\n"),
    "probe_post": request(False, "POST /healthz", "Host: rebind.evil\n" + JSON, "{}"),
    "open_metrics": request(True, "GET /metrics", "Host: 10.0.0.7:8080\n", open_metrics=True),
    "open_metrics_cameras": request(True, "GET /cameras", "", open_metrics=True),
}

# Camera URIs as text (camera_uri.rs).
URIS = {
    "password": "rtsp://admin:s3cr%40t@10.0.0.5:554/stream1",
    "password_slash": "rtsp://user:secret/pass@127.0.0.1:18554/x",
    "password_slash_no_colon": "rtsp://user/secretpass@127.0.0.1/x",
    "password_encoded_slash": "rtsp://user:secret%2Fpass@127.0.0.1:18554/x",
    "password_at": "rtsp://user:p@ssw0rd@cam.local/x",
    "password_query_fragment": "https://user:tok3n-value@cam.example:8443/path?x=1#frag",
    "query_credentials": "rtsp://10.0.0.5/cam/realmonitor?channel=1&user=admin&Password=s%2Fecret9#x",
    "quote_in_userinfo": "rtsp://us'er:pa%22ss-word@h/x",
    "ipv6": "rtsps://viewer:v1ewer-pass@[fe80::1%25eth0]:322/h264",
    "ipv6_unclosed": "rtsp://u:password1@[::1/x",
    "bad_port": "rtsp://admin:hunter22@h:70000/x",
    "empty_port": "http://h:/mjpeg",
    "no_host": "rtsp://user:password@/x",
    "uppercase": "RTSP://Admin:PassWord99@Cam.Local/Stream",
    "file": "file:///var/videos/clip%20one@2x.mp4",
    "file_host": "file://nas/etc/passwd",
    "file_userinfo": "file://user:secret@localhost/x.mp4",
    "bad_scheme": "rtmp://admin:secretpass@h/x",
    "no_scheme": "admin:secretpass@cam://x",
}
URIS = {name: uri.encode() for name, uri in URIS.items()}

for target, seeds in (("yolox_decode", YOLOX), ("yolov8_decode", YOLOV8), ("ssd_decode", SSD),
                      ("classifier_decode", CLASSIFIER), ("model_shapes", MODEL),
                      ("labels", LABELS), ("api_request", API), ("camera_uri", URIS)):
    folder = os.path.join(here, "corpus", target)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for name, data in seeds.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
