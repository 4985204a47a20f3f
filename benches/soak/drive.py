"""Mixed registry traffic for a fixed time, for benches/soak.sh.

Threads loop until DURATION seconds have passed, each doing one kind of
request: blob pushes (POST, PATCH, PUT), manifest pushes, pulls (GET of a
manifest and a blob), HEADs, wrong passwords from another loopback
address, and uploads aborted halfway. Every unexpected status or error is
counted. Prints one JSON line with counts per kind.

Usage: drive.py HOST PORT USER PASSWORD DURATION
  KINDS=push,pull,wrong_password,abort  only these kinds (default: all;
  pull also does the HEADs)
"""
import hashlib
import json
import os
import socket
import sys
import threading
import time

import requests

host, port, user, password, duration = sys.argv[1:6]
port, duration = int(port), float(duration)
base = f"http://{host}:{port}"
auth = (user, password)
deadline = time.monotonic() + duration
counts = {}
errors = {}
lock = threading.Lock()


def count(kind, ok, detail=""):
    with lock:
        counts[kind] = counts.get(kind, 0) + 1
        if not ok:
            errors.setdefault(kind, []).append(detail)


def push_blob(s, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = s.post(f"{base}/v2/{repo}/blobs/uploads/", auth=auth)
    if r.status_code != 202:
        return None, f"POST {r.status_code}"
    loc = r.headers["Location"]
    loc = loc if loc.startswith("http") else base + loc
    r = s.patch(loc, data=data, auth=auth, headers={"Content-Type": "application/octet-stream"})
    if r.status_code != 202:
        return None, f"PATCH {r.status_code}"
    loc = r.headers["Location"]
    loc = loc if loc.startswith("http") else base + loc
    r = s.put(f"{loc}{'&' if '?' in loc else '?'}digest={digest}", auth=auth)
    if r.status_code != 201:
        return None, f"PUT {r.status_code}"
    return digest, ""


def push_image(s, repo, tag, seed):
    layer = os.urandom(64 << 10) + seed.encode()
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    ld, why = push_blob(s, repo, layer)
    cd, why2 = push_blob(s, repo, config)
    if not ld or not cd:
        return None, why or why2
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": len(layer)}],
    }).encode()
    r = s.put(f"{base}/v2/{repo}/manifests/{tag}", data=manifest, auth=auth,
              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    if r.status_code != 201:
        return None, f"manifest PUT {r.status_code}"
    return (ld, hashlib.sha256(layer).hexdigest()), ""


def pusher(n):
    s = requests.Session()
    i = 0
    while time.monotonic() < deadline:
        i += 1
        got, why = push_image(s, f"soak/push{n}", f"t{i % 5}", f"{n}-{i}")
        count("push", got is not None, why)


def puller(n):
    s = requests.Session()
    got, why = push_image(s, "soak/pull", f"p{n}", f"pull-{n}")
    if not got:
        count("pull", False, "setup: " + why)
        return
    layer, layer_hex = got
    while time.monotonic() < deadline:
        r = s.get(f"{base}/v2/soak/pull/manifests/p{n}", auth=auth,
                  headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        ok = r.status_code == 200
        r2 = s.get(f"{base}/v2/soak/pull/blobs/{layer}", auth=auth)
        ok = ok and r2.status_code == 200 and hashlib.sha256(r2.content).hexdigest() == layer_hex
        count("pull", ok, f"{r.status_code}/{r2.status_code}")
        r = s.head(f"{base}/v2/soak/pull/blobs/{layer}", auth=auth)
        count("head", r.status_code == 200, str(r.status_code))


def wrong_password():
    # From 127.0.0.2 so the throttle it earns never reaches the others.
    while time.monotonic() < deadline:
        try:
            c = socket.create_connection((host, port), timeout=10, source_address=("127.0.0.2", 0))
            c.sendall(b"GET /v2/ HTTP/1.1\r\nHost: soak\r\nAuthorization: Basic d3Jvbmc6cGFzcw==\r\nConnection: close\r\n\r\n")
            status = c.recv(64).split(b" ")[1]
            c.close()
            count("wrong_password", status in (b"401", b"429"), status.decode())
        except OSError as e:
            count("wrong_password", False, repr(e))
        time.sleep(0.01)


def aborter():
    s = requests.Session()
    token = "Basic " + __import__("base64").b64encode(f"{user}:{password}".encode()).decode()
    while time.monotonic() < deadline:
        r = s.post(f"{base}/v2/soak/abort/blobs/uploads/", auth=auth)
        if r.status_code != 202:
            count("abort", False, f"POST {r.status_code}")
            continue
        loc = r.headers["Location"]
        path = loc.split(f"{port}", 1)[-1] if loc.startswith("http") else loc
        try:
            c = socket.create_connection((host, port), timeout=10)
            c.sendall(f"PATCH {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: {token}\r\n"
                      f"Content-Type: application/octet-stream\r\nContent-Length: {1 << 20}\r\n\r\n".encode())
            c.sendall(os.urandom(256 << 10))
            c.close()
            count("abort", True)
        except OSError as e:
            count("abort", False, repr(e))
        time.sleep(0.05)


kinds = set(filter(None, os.environ.get("KINDS", "push,pull,wrong_password,abort").split(",")))
unknown = kinds - {"push", "pull", "wrong_password", "abort"}
if unknown or not kinds:
    sys.exit(f"KINDS: unknown kind(s) {sorted(unknown)}; use push, pull, wrong_password, abort")
threads = []
if "push" in kinds:
    threads += [threading.Thread(target=pusher, args=(i,)) for i in range(2)]
if "pull" in kinds:
    threads += [threading.Thread(target=puller, args=(i,)) for i in range(3)]
if "wrong_password" in kinds:
    threads.append(threading.Thread(target=wrong_password))
if "abort" in kinds:
    threads.append(threading.Thread(target=aborter))
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"counts": counts, "errors": {k: len(v) for k, v in errors.items()},
                  "first_errors": {k: v[:3] for k, v in errors.items()}}))
