"""Pushes one blob in chunks through two gateways in turn, as clients behind
an L4 balancer do: POST through the first, then each PATCH and the final
PUT through the other one than the request before. Python's `requests`
writes every request whole (headers and body) before reading the answer.

Usage: alternating_chunked_push.py BASE_A BASE_B REPO CHUNKS CHUNK_BYTES SEED
Prints one JSON line: each request's gateway and status, the upload's
Location paths, the digest pushed and the digest the gateways serve back.
"""
import hashlib
import json
import random
import sys
from urllib.parse import urljoin

import requests

base_a, base_b, repo, chunks, chunk_bytes, seed = sys.argv[1:7]
chunks, chunk_bytes = int(chunks), int(chunk_bytes)
rng = random.Random(int(seed))
parts = [rng.randbytes(chunk_bytes) for _ in range(chunks)]
blob = b"".join(parts)
digest = "sha256:" + hashlib.sha256(blob).hexdigest()
bases = [base_a, base_b]
seen = []
locations = []


def relative(location):
    # The gateway hands out paths or absolute URLs of itself; the next
    # request goes to the other gateway, so only the path and query count.
    path = location.split("://", 1)[-1]
    return path[path.index("/"):] if "://" in location else location


s = requests.Session()
turn = 0
r = s.post(f"{bases[turn]}/v2/{repo}/blobs/uploads/")
seen.append([turn, "POST", r.status_code])
location = relative(r.headers.get("Location", ""))
locations.append(location)
offset = 0
for part in parts:
    turn = 1 - turn
    r = s.patch(urljoin(bases[turn], location), data=part, headers={
        "Content-Type": "application/octet-stream",
        "Content-Range": f"{offset}-{offset + len(part) - 1}",
    })
    seen.append([turn, "PATCH", r.status_code])
    if r.status_code != 202:
        break
    offset += len(part)
    location = relative(r.headers["Location"])
    locations.append(location)
turn = 1 - turn
sep = "&" if "?" in location else "?"
r = s.put(urljoin(bases[turn], f"{location}{sep}digest={digest}"))
seen.append([turn, "PUT", r.status_code])
turn = 1 - turn
r = s.get(f"{bases[turn]}/v2/{repo}/blobs/{digest}")
served = "sha256:" + hashlib.sha256(r.content).hexdigest() if r.status_code == 200 else None
seen.append([turn, "GET", r.status_code])
print(json.dumps({"seen": seen, "locations": locations, "digest": digest, "served_digest": served}))
