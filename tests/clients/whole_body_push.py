"""Pushes one blob the way oras-py does, with Python's `requests`: every
request is written whole (headers and body) before the response is read,
and credentials are sent only after a 401 asked for them.

Usage: whole_body_push.py BASE_URL REPO USER PASSWORD SIZE_BYTES [CA_FILE]
Prints one JSON line: the statuses seen and the digest pushed.
"""
import hashlib
import json
import os
import sys

import requests

base, repo, user, password, size = sys.argv[1:6]
verify = sys.argv[6] if len(sys.argv) > 6 else True
body = os.urandom(int(size))
digest = "sha256:" + hashlib.sha256(body).hexdigest()
seen = []
s = requests.Session()
# Per request: a session-wide `verify` loses to REQUESTS_CA_BUNDLE.
kw = {"verify": verify}

# Start the upload with credentials, then send the whole blob without them,
# as a client does that has no token for this request yet.
r = s.post(f"{base}/v2/{repo}/blobs/uploads/", auth=(user, password), **kw)
seen.append(("POST", r.status_code))
location = r.headers["Location"]
if location.startswith("/"):
    location = base + location
sep = "&" if "?" in location else "?"
put_url = f"{location}{sep}digest={digest}"

try:
    r = s.put(put_url, data=body, headers={"Content-Type": "application/octet-stream"}, **kw)
    seen.append(("PUT", r.status_code))
    challenge = r.headers.get("WWW-Authenticate", "")
except requests.exceptions.RequestException as e:  # a reset instead of the 401
    print(json.dumps({"seen": seen, "error": f"{type(e).__name__}: {e}"}))
    sys.exit(1)

if r.status_code == 401 and challenge.lower().startswith("basic"):
    r = s.put(put_url, data=body, auth=(user, password),
              headers={"Content-Type": "application/octet-stream"}, **kw)
    seen.append(("PUT", r.status_code))

r = s.head(f"{base}/v2/{repo}/blobs/{digest}", auth=(user, password), **kw)
seen.append(("HEAD", r.status_code))
print(json.dumps({"seen": seen, "digest": digest,
                  "served_digest": r.headers.get("Docker-Content-Digest")}))
