"""A local Hugging Face Hub for tests: the HTTP endpoints the real `huggingface_hub` client uploads and downloads with.

`HubServer` runs a small standard-library HTTP server in a background thread and speaks enough of the Hub's API
that the unmodified `huggingface_hub` client (`HfApi`, `hf_hub_download`, `snapshot_download`, `HfFileSystem`) and
`datasets.load_dataset` work against it, uploads included, through the Git LFS protocol::

    with HubServer() as hub, hub.client_env():
        api = HfApi(endpoint=hub.endpoint, token=hub.token)
        api.create_repo("org/name", repo_type="dataset")

Covered endpoints (`{type}s` is `datasets`, `spaces` or nothing for models, as on the Hub):

- `GET /api/whoami-v2`; `POST /api/repos/create` (409 when the repo exists); `DELETE /api/repos/delete`;
  `POST /api/validate-yaml` (the card's front matter must parse as a YAML mapping).
- `GET /api/{type}s/{id}` and `/api/{type}s/{id}/revision/{rev}`: repo info with `sha` and `siblings`
  (`?blobs=true` adds sizes, blob ids and LFS details).
- `POST /api/{type}s/{id}/preupload/{rev}`: "lfs" for files of `lfs_threshold` bytes or more, binary suffixes
  (.parquet, .png, .arrow, ...) and samples holding a NUL byte; "regular" otherwise.
- `POST /api/{type}s/{id}/commit/{rev}`: the NDJSON commit (header with summary, description and an optional
  `parentCommit` checked against the branch head; `file` lines with base64 content; `lfsFile` lines naming an LFS
  object uploaded to this repo; `deletedFile`/`deletedFolder`), applied atomically as one commit on a branch.
- `POST /{type}s/{id}.git/info/lfs/objects/batch` (upload operation, basic transfer): upload and verify actions
  pointing back at this server; `PUT /lfs-upload/...` (checks sha256 and size) and `POST .../lfs/objects/verify`.
- `POST/DELETE /api/{type}s/{id}/tag/{rev|tag}` (409 when the tag exists), `POST/DELETE .../branch/{name}`,
  `GET .../refs`, `GET .../commits/{rev}`, `GET .../tree/{rev}/{path}` (`recursive`, `expand` with last commits),
  `POST .../paths-info/{rev}` (form or JSON body).
- `HEAD/GET /{type}s/{id}/resolve/{rev}/{path}` with `X-Repo-Commit`, `ETag` (the git blob id, or the sha256 for LFS
  files), `X-Linked-Etag`/`X-Linked-Size` for LFS files, and single byte ranges (`Range: bytes=a-b`, 206).

Revisions are branch names, tag names and full 40-character commit ids. Every commit holds its full tree (path ->
git blob id, sha256, size, LFS flag); blob contents live under `root/objects/` (a temporary folder unless `root` is
given) and the repositories' state in `root/state.json`, so a server restarted on the same root serves the same repos.

Auth: writes need `Authorization: Bearer <token>` equal to the server's token (401 otherwise); reads of private repos
too (401, which the client reports as "repository not found", as on the Hub); a wrong token is always refused.
LFS uploads carry a one-time ticket in their URL instead, like the Hub's pre-signed storage URLs, so the token never
travels anywhere but the Authorization header. Every request is recorded in `requests` (method, path, query, status,
headers and, except LFS uploads, the body) so tests can check what the client sent.

Left out: xet storage (set `HF_HUB_DISABLE_XET=1`; `client_env()` does), multipart LFS uploads (the server never asks
for them), LFS downloads through the batch API, pull requests (`create_pr`), namespaces and permissions (any holder of
the token may write anywhere), gated repos, Spaces runtimes, discussions, the datasets viewer and `/parquet`
conversions, search and listing of repos, commit squashing and the xet-based `pipelined_upload` of `upload_folder`.

Configuring the client: `huggingface_hub` reads `HF_ENDPOINT`, `HF_HUB_DISABLE_XET` and `HF_HUB_OFFLINE` once, when
it is imported (into `huggingface_hub.constants`), and `datasets` copies the endpoint into `datasets.config` at its
own import. A subprocess started with `env()` in its environment is configured; in the current process, where the
libraries may already be imported, use `with hub.client_env():`, which sets the variables and patches those
import-time constants for the duration, then restores them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

DEFAULT_TOKEN = "hf_datakit_local_test_token"
DEFAULT_USER = "datakit-test"
_TYPES = {"datasets": "dataset", "spaces": "space", "models": "model"}  # URL segment -> repo type
_PREFIX = {"dataset": "datasets/", "space": "spaces/", "model": ""}  # repo type -> URL prefix of web paths
# Suffixes the Hub stores through LFS whatever their size (its default .gitattributes tracks them).
_BINARY_SUFFIXES = (".parquet", ".arrow", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".bin", ".safetensors",
                    ".pt", ".pth", ".ckpt", ".npy", ".npz", ".pkl", ".pickle", ".gz", ".zip", ".zst", ".tar",
                    ".bz2", ".xz", ".7z", ".h5", ".onnx", ".msgpack", ".model", ".wav", ".mp3", ".mp4", ".pdf")
_GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in _BINARY_SUFFIXES)
_ROUTE_NAMES = ("whoami", "create-repo", "delete-repo", "validate-yaml", "repo-info", "preupload", "commit",
                "lfs-batch", "lfs-upload", "lfs-verify", "tag", "delete-tag", "branch", "delete-branch", "refs",
                "commits", "tree", "paths-info", "resolve")


class HubError(Exception):
    """An HTTP error answer: status, Hub error code (the client maps `X-Error-Code` to its exception classes)."""

    def __init__(self, status: int, message: str, code: str | None = None, extra: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.extra = extra or {}


@dataclass(frozen=True)
class LoggedRequest:
    """One request the server answered."""

    method: str
    path: str  # as sent, percent-encoded, without the query
    query: str
    status: int
    headers: dict[str, str]
    body: bytes | None  # None for LFS object uploads (large) and requests without a body
    route: str  # which endpoint handled it (one of the names `fail_next` accepts), "" when none matched


@dataclass
class _File:
    oid: str  # the git blob id: sha1 of the content, or of the LFS pointer for LFS files
    sha256: str
    size: int
    lfs: bool


@dataclass
class _Commit:
    id: str
    parent: str | None
    title: str
    message: str
    date: str
    files: dict[str, _File]


@dataclass
class _Repo:
    type: str
    id: str
    private: bool
    created: str
    commits: dict[str, _Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    lfs_objects: set[str] = field(default_factory=set)  # sha256 of LFS objects uploaded to this repo

    def resolve(self, revision: str) -> _Commit:
        """The commit a branch, tag or full commit id names (404 RevisionNotFound otherwise)."""
        sha = self.branches.get(revision) or self.tags.get(revision)
        if sha is None and revision in self.commits:
            sha = revision
        if sha is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commits[sha]

    def history(self, commit: _Commit) -> Iterator[_Commit]:
        current: _Commit | None = commit
        while current is not None:
            yield current
            current = self.commits[current.parent] if current.parent else None


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _git_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _last_commit(repo: _Repo, head: _Commit, path: str, folder: bool) -> dict[str, str]:
    """The newest commit at or before `head` that changed `path` (or anything under it, for a folder)."""

    def view(commit: _Commit) -> Any:
        if folder:
            return sorted((p, f.oid) for p, f in commit.files.items() if p.startswith(path + "/"))
        entry = commit.files.get(path)
        return entry.oid if entry else None

    last = head
    for commit in repo.history(head):
        parent = repo.commits[commit.parent] if commit.parent else None
        last = commit
        if parent is None or view(parent) != view(commit):
            break
    return {"id": last.id, "title": last.title, "date": last.date}


class HubServer:
    """A local Hub on `127.0.0.1:<free port>`; a context manager that starts and stops it.

    `root`: where blobs and state live (a temporary folder, removed on close, when None). `token`: the one token
    that may write (and read private repos). `lfs_threshold`: files of at least this many bytes go through LFS
    (1 MiB; the Hub's own limit for text is 10 MB, smaller keeps tests fast).
    """

    def __init__(self, root: str | Path | None = None, *, token: str = DEFAULT_TOKEN, user: str = DEFAULT_USER,
                 lfs_threshold: int = 1 << 20) -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="datakit-hub-")) if root is None else Path(root)
        self.token = token
        self.user = user
        self.lfs_threshold = lfs_threshold
        self.requests: list[LoggedRequest] = []
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._tickets: dict[str, tuple[tuple[str, str], str, int]] = {}  # upload ticket -> (repo key, oid, size)
        self._failures: dict[str, list[tuple[int, str]]] = {}
        self._lock = threading.RLock()
        self._counter = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        self._load()

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> HubServer:
        """Start serving in a background thread (idempotent)."""
        if self._httpd is None:
            self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
            self._httpd.daemon_threads = True
            # A short poll interval keeps close() quick (shutdown waits for the serving loop's next poll).
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="datakit-hub", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; remove the temporary root if the server made it."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def endpoint(self) -> str:
        """The base URL clients use as `HF_ENDPOINT`."""
        if self._httpd is None:
            raise RuntimeError("HubServer is not started: use `with HubServer() as hub:` or call start()")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def env(self) -> dict[str, str]:
        """Environment variables that point a fresh `huggingface_hub`/`datasets` process at this server, over LFS."""
        return {
            "HF_ENDPOINT": self.endpoint,
            "HF_TOKEN": self.token,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_OFFLINE": "0",
            "HF_DATASETS_OFFLINE": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }

    @contextlib.contextmanager
    def client_env(self) -> Iterator[None]:
        """Point this process's `huggingface_hub` (and `datasets`, once imported) at this server for the block:
        sets `env()` in `os.environ` and patches the constants both libraries read at import time; restores all."""
        import huggingface_hub.constants as hf_constants

        saved_env = {key: os.environ.get(key) for key in self.env()}
        patches: list[tuple[Any, str, Any]] = [
            (hf_constants, "ENDPOINT", self.endpoint),
            (hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", self.endpoint + "/{repo_id}/resolve/{revision}/{filename}"),
            (hf_constants, "HF_HUB_DISABLE_XET", True),
            (hf_constants, "HF_HUB_OFFLINE", False),
        ]
        try:
            import datasets.config as ds_config
        except ImportError:  # datasets is optional for this helper
            ds_config = None
        if ds_config is not None:
            patches += [
                (ds_config, "HF_ENDPOINT", self.endpoint),
                (ds_config, "HUB_DATASETS_URL", self.endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}"),
                (ds_config, "HF_HUB_OFFLINE", False),
                (ds_config, "HF_DATASETS_OFFLINE", False),
            ]
        saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
        os.environ.update(self.env())
        for module, name, value in patches:
            setattr(module, name, value)
        try:
            yield
        finally:
            for module, name, value in saved:
                setattr(module, name, value)
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    # -- test hooks and inspection -----------------------------------------------------------------------------------

    def fail_next(self, route: str, status: int = 500, message: str = "Injected failure") -> None:
        """Answer the next request to `route` (e.g. "commit", "tag", "lfs-upload") with `status`, changing nothing."""
        if route not in _ROUTE_NAMES:
            raise ValueError(f"unknown route {route!r}; expected one of {', '.join(_ROUTE_NAMES)}")
        with self._lock:
            self._failures.setdefault(route, []).append((status, message))

    def requests_to(self, route: str) -> list[LoggedRequest]:
        """The logged requests one endpoint answered, oldest first."""
        with self._lock:
            return [r for r in self.requests if r.route == route]

    def commits(self, repo_id: str, repo_type: str = "dataset", revision: str = "main") -> list[str]:
        """Commit ids reachable from `revision`, newest first."""
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            return [c.id for c in repo.history(repo.resolve(revision))]

    def tags(self, repo_id: str, repo_type: str = "dataset") -> dict[str, str]:
        """Tag name -> commit id."""
        with self._lock:
            return dict(self._repo(repo_type, repo_id).tags)

    # -- state ---------------------------------------------------------------------------------------------------

    def _load(self) -> None:
        path = self.root / "state.json"
        if not path.exists():
            return
        for raw in json.loads(path.read_text(encoding="utf-8"))["repos"]:
            commits = {
                sha: _Commit(**{**c, "files": {p: _File(**f) for p, f in c["files"].items()}})
                for sha, c in raw["commits"].items()
            }
            repo = _Repo(type=raw["type"], id=raw["id"], private=raw["private"], created=raw["created"],
                         commits=commits, branches=raw["branches"], tags=raw["tags"],
                         lfs_objects=set(raw["lfs_objects"]))
            self._repos[(repo.type, repo.id)] = repo

    def _save(self) -> None:
        repos = [{**asdict(repo), "lfs_objects": sorted(repo.lfs_objects)} for repo in self._repos.values()]
        tmp = self.root / "state.json.tmp"
        tmp.write_text(json.dumps({"repos": repos}), encoding="utf-8")
        tmp.replace(self.root / "state.json")

    def _object_path(self, sha256: str) -> Path:
        return self.root / "objects" / sha256[:2] / sha256

    def _store(self, content: bytes, lfs: bool) -> _File:
        sha256 = hashlib.sha256(content).hexdigest()
        path = self._object_path(sha256)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".{secrets.token_hex(4)}.tmp")
            tmp.write_bytes(content)
            tmp.replace(path)
        oid = _git_oid(_lfs_pointer(sha256, len(content))) if lfs else _git_oid(content)
        return _File(oid=oid, sha256=sha256, size=len(content), lfs=lfs)

    def _repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def _new_commit(self, repo: _Repo, parent: _Commit | None, files: dict[str, _File], title: str,
                    message: str) -> _Commit:
        self._counter += 1
        tree = json.dumps(sorted((p, f.oid) for p, f in files.items()))
        parent_id = parent.id if parent else ""
        seed = f"{repo.type}/{repo.id}\n{parent_id}\n{tree}\n{title}\n{time.time_ns()}\n{self._counter}"
        commit = _Commit(id=hashlib.sha1(seed.encode()).hexdigest(), parent=parent.id if parent else None,
                         title=title, message=message, date=_now(), files=files)
        repo.commits[commit.id] = commit
        return commit

    def _repo_url(self, repo: _Repo) -> str:
        return f"{self.endpoint}/{_PREFIX[repo.type]}{repo.id}"

    # -- endpoints (called by the handler with the lock held) ----------------------------------------------------

    def _whoami(self, req: _Request) -> Any:
        req.require_write()
        return {"type": "user", "name": self.user, "fullname": self.user, "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}}

    def _create_repo(self, req: _Request) -> Any:
        req.require_write()
        body = req.json()
        name, org = body.get("name"), body.get("organization") or self.user
        repo_type = body.get("type") or "model"
        if not name or repo_type not in _PREFIX:
            raise HubError(400, "name and a valid type are required")
        repo_id = f"{org}/{name}"
        key = (repo_type, repo_id)
        if key in self._repos:
            # The Hub names the existing repo in its 409 answer; the client's `exist_ok=True` reads that url.
            raise HubError(409, "You already created this repo", extra={"url": self._repo_url(self._repos[key])})
        private = body.get("visibility") == "private" or bool(body.get("private"))
        repo = _Repo(type=repo_type, id=repo_id, private=private, created=_now())
        first = self._new_commit(repo, None, {".gitattributes": self._store(_GITATTRIBUTES.encode(), False)},
                                 "initial commit", "")
        repo.branches["main"] = first.id
        self._repos[(repo_type, repo_id)] = repo
        self._save()
        return {"url": self._repo_url(repo), "name": repo_id, "id": repo_id}

    def _delete_repo(self, req: _Request) -> Any:
        req.require_write()
        body = req.json()
        org = body.get("organization") or self.user
        repo = self._repo(body.get("type") or "model", f"{org}/{body.get('name')}")
        del self._repos[(repo.type, repo.id)]
        self._save()
        return {}

    def _validate_yaml(self, req: _Request) -> Any:
        content = req.json().get("content", "")
        if content.startswith("---"):
            end = content.find("\n---", 3)
            try:
                meta = yaml.safe_load(content[3:end] if end != -1 else "")
            except yaml.YAMLError as exc:
                raise HubError(400, f"Invalid YAML in README.md: {exc}") from exc
            if meta is not None and not isinstance(meta, dict):
                raise HubError(400, "README.md metadata must be a YAML mapping")
        return {"errors": [], "warnings": []}

    def _repo_info(self, req: _Request, repo: _Repo, revision: str | None) -> Any:
        commit = repo.resolve(revision or "main")
        blobs = req.flag("blobs")
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=entry.size, blobId=entry.oid)
                if entry.lfs:
                    sibling["lfs"] = {"sha256": entry.sha256, "size": entry.size,
                                      "pointerSize": len(_lfs_pointer(entry.sha256, entry.size))}
            siblings.append(sibling)
        return {"_id": hashlib.sha1(repo.id.encode()).hexdigest()[:24], "id": repo.id, "author": repo.id.split("/")[0],
                "sha": commit.id, "private": repo.private, "gated": False, "disabled": False, "downloads": 0,
                "likes": 0, "tags": [], "createdAt": repo.created, "lastModified": commit.date,
                "siblings": siblings}

    def _preupload(self, req: _Request, repo: _Repo, revision: str) -> Any:
        req.require_write()
        commit = repo.resolve(revision) if revision in repo.branches or revision in repo.commits else None
        answer = []
        for item in req.json().get("files", []):
            path, size = item["path"], int(item["size"])
            sample = base64.b64decode(item.get("sample", ""))
            lfs = size >= self.lfs_threshold or path.lower().endswith(_BINARY_SUFFIXES) or b"\0" in sample
            existing = commit.files.get(path) if commit else None
            oid = None if existing is None else (existing.sha256 if existing.lfs else existing.oid)
            answer.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                           "oid": oid})
        return {"files": answer, "commitOid": commit.id if commit else None}

    def _lfs_batch(self, req: _Request, repo: _Repo) -> Any:
        req.require_write()
        body = req.json()
        if body.get("operation") != "upload":
            raise HubError(400, "only the upload operation is supported by this server")
        base = f"{self.endpoint}/{_PREFIX[repo.type]}{repo.id}.git/info/lfs/objects"
        objects = []
        for item in body.get("objects", []):
            oid, size = str(item["oid"]), int(item["size"])
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if oid not in repo.lfs_objects:
                ticket = secrets.token_urlsafe(16)
                self._tickets[ticket] = ((repo.type, repo.id), oid, size)
                entry["actions"] = {
                    "upload": {"href": f"{self.endpoint}/lfs-upload/{ticket}", "header": {}},
                    "verify": {"href": f"{base}/verify", "header": {}},
                }
            objects.append(entry)
        return {"transfer": "basic", "objects": objects}

    def _lfs_upload(self, req: _Request, ticket: str) -> Any:
        claim = self._tickets.pop(ticket, None)
        if claim is None:
            raise HubError(403, "unknown or already used upload ticket")
        key, oid, size = claim
        content = req.body
        if len(content) != size or hashlib.sha256(content).hexdigest() != oid:
            raise HubError(400, f"uploaded object does not match oid {oid} and size {size}")
        self._store(content, True)
        repo = self._repos.get(key)
        if repo is not None:
            repo.lfs_objects.add(oid)
            self._save()
        return {}

    def _lfs_verify(self, req: _Request, repo: _Repo) -> Any:
        req.require_write()
        body = req.json()
        oid, size = body.get("oid"), body.get("size")
        if oid not in repo.lfs_objects or not self._object_path(oid).exists():
            raise HubError(404, f"LFS object {oid} was not uploaded")
        if self._object_path(oid).stat().st_size != size:
            raise HubError(400, f"LFS object {oid} has another size than {size}")
        return {}

    def _commit(self, req: _Request, repo: _Repo, revision: str) -> Any:
        req.require_write()
        if req.flag("create_pr"):
            raise HubError(400, "pull requests are not supported by this test server")
        if revision not in repo.branches:
            raise HubError(404, f"Invalid rev id: {revision} (commits go to branches)", "RevisionNotFound")
        head = repo.commits[repo.branches[revision]]
        lines = [json.loads(line) for line in req.body.decode("utf-8").splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the commit payload must start with a header line")
        header = lines[0]["value"]
        if not header.get("summary"):
            raise HubError(400, "the commit summary is required")
        parent = header.get("parentCommit")
        if parent and parent != head.id:
            raise HubError(412, f"A commit has happened since {parent}: the head of {revision} is {head.id}")
        files = dict(head.files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = str(value.get("path", "")).strip("/")
            if not path:
                raise HubError(400, f"a {key} line without a path")
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"unsupported encoding for {path}")
                files[path] = self._store(base64.b64decode(value["content"]), False)
            elif key == "lfsFile":
                oid = value.get("oid")
                if oid not in repo.lfs_objects or not self._object_path(oid).exists():
                    raise HubError(422, f"LFS object {oid} for {path} was not uploaded to this repository")
                size = self._object_path(oid).stat().st_size
                if value.get("size") is not None and int(value["size"]) != size:
                    raise HubError(422, f"LFS object {oid} for {path} has size {size}, not {value['size']}")
                files[path] = _File(oid=_git_oid(_lfs_pointer(oid, size)), sha256=oid, size=size, lfs=True)
            elif key == "deletedFile":
                if path not in files:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del files[path]
            elif key == "deletedFolder":
                doomed = [p for p in files if p.startswith(path + "/")]
                if not doomed:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in doomed:
                    del files[p]
            else:
                raise HubError(400, f"unsupported commit operation {key!r}")
        commit = self._new_commit(repo, head, files, header["summary"], header.get("description") or "")
        repo.branches[revision] = commit.id
        self._save()
        return {"success": True, "commitOid": commit.id, "commitUrl": f"{self._repo_url(repo)}/commit/{commit.id}",
                "pullRequestUrl": None, "hookOutput": ""}

    def _create_ref(self, req: _Request, repo: _Repo, kind: str, name: str, revision: str) -> Any:
        req.require_write()
        refs = repo.tags if kind == "tag" else repo.branches
        if name in repo.tags or name in repo.branches:
            raise HubError(409, f"Reference {name} already exists")
        refs[name] = repo.resolve(revision).id
        self._save()
        return {}

    def _delete_ref(self, req: _Request, repo: _Repo, kind: str, name: str) -> Any:
        req.require_write()
        refs = repo.tags if kind == "tag" else repo.branches
        if name not in refs:
            raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
        if kind == "branch" and name == "main":
            raise HubError(403, "the main branch cannot be deleted")
        del refs[name]
        self._save()
        return {}

    def _refs(self, repo: _Repo) -> Any:
        def refs(names: dict[str, str], prefix: str) -> list[dict[str, str]]:
            return [{"name": n, "ref": f"{prefix}{n}", "targetCommit": sha} for n, sha in sorted(names.items())]

        return {"branches": refs(repo.branches, "refs/heads/"), "tags": refs(repo.tags, "refs/tags/"),
                "converts": [], "pullRequests": []}

    def _commits(self, repo: _Repo, revision: str) -> Any:
        return [{"id": c.id, "title": c.title, "message": c.message, "date": c.date,
                 "authors": [{"user": self.user}]} for c in repo.history(repo.resolve(revision))]

    def _entry(self, repo: _Repo, commit: _Commit, path: str, expand: bool) -> dict[str, Any]:
        """A tree / paths-info entry for a file or folder of `commit` (which must hold it)."""
        entry_file = commit.files.get(path)
        if entry_file is not None:
            out: dict[str, Any] = {"type": "file", "path": path, "size": entry_file.size, "oid": entry_file.oid}
            if entry_file.lfs:
                out["lfs"] = {"oid": entry_file.sha256, "size": entry_file.size,
                              "pointerSize": len(_lfs_pointer(entry_file.sha256, entry_file.size))}
        else:
            below = sorted((p, f.oid) for p, f in commit.files.items() if p.startswith(path + "/"))
            out = {"type": "directory", "path": path, "size": 0,
                   "oid": hashlib.sha1(json.dumps(below).encode()).hexdigest()}
        if expand:
            out["lastCommit"] = _last_commit(repo, commit, path, entry_file is None)
        return out

    @staticmethod
    def _folders(commit: _Commit) -> set[str]:
        return {"/".join(p.split("/")[:i]) for p in commit.files for i in range(1, p.count("/") + 1)}

    def _tree(self, req: _Request, repo: _Repo, revision: str, path: str) -> Any:
        commit = repo.resolve(revision)
        folders = self._folders(commit)
        if path and path not in folders:
            raise HubError(404, f"{path} is not a folder of {revision}", "EntryNotFound")
        prefix = path + "/" if path else ""
        names = sorted(set(commit.files) | folders)
        recursive = req.flag("recursive")
        chosen = [n for n in names if n.startswith(prefix) and (recursive or "/" not in n[len(prefix):])]
        return [self._entry(repo, commit, n, req.flag("expand")) for n in chosen]

    def _paths_info(self, req: _Request, repo: _Repo, revision: str) -> Any:
        commit = repo.resolve(revision)
        if req.headers.get("content-type", "").startswith("application/json"):
            body = req.json()
            paths, expand = body.get("paths", []), bool(body.get("expand"))
        else:
            form = parse_qs(req.body.decode("utf-8"))
            paths, expand = form.get("paths", []), form.get("expand", ["false"])[0].lower() == "true"
        folders = self._folders(commit)
        return [self._entry(repo, commit, p.strip("/"), expand) for p in paths
                if p.strip("/") in commit.files or p.strip("/") in folders]

    def _resolve(self, req: _Request, repo: _Repo, revision: str, path: str) -> tuple[int, dict[str, str], bytes]:
        commit = repo.resolve(revision)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        headers = {"X-Repo-Commit": commit.id, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream",
                   "ETag": f'"{entry.sha256 if entry.lfs else entry.oid}"'}
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
        start, end, status = 0, entry.size - 1, 200
        ranged = req.headers.get("range")
        if ranged and entry.size > 0:
            start, end = _parse_range(ranged, entry.size)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
        headers["Content-Length"] = str(max(end - start + 1, 0))
        if req.method == "HEAD":
            return status, headers, b""
        with open(self._object_path(entry.sha256), "rb") as f:
            f.seek(start)
            return status, headers, f.read(max(end - start + 1, 0))

    # -- routing -------------------------------------------------------------------------------------------------

    def _route(self, req: _Request) -> tuple[str, Any]:
        """(route name, handler thunk) for a request; HubError 404 when no endpoint matches."""
        seg = req.segments
        m = req.method
        if seg[:1] == ["api"]:
            if seg == ["api", "whoami-v2"] and m == "GET":
                return "whoami", lambda: self._whoami(req)
            if seg == ["api", "repos", "create"] and m == "POST":
                return "create-repo", lambda: self._create_repo(req)
            if seg == ["api", "repos", "delete"] and m == "DELETE":
                return "delete-repo", lambda: self._delete_repo(req)
            if seg == ["api", "validate-yaml"] and m == "POST":
                return "validate-yaml", lambda: self._validate_yaml(req)
            if len(seg) >= 4 and seg[1] in _TYPES:
                return self._route_api(req, _TYPES[seg[1]], f"{seg[2]}/{seg[3]}", seg[4:])
        elif seg[:1] == ["lfs-upload"] and len(seg) == 2 and m == "PUT":
            return "lfs-upload", lambda: self._lfs_upload(req, seg[1])
        else:
            repo_type = _TYPES.get(seg[0], "model") if seg else "model"
            rest = seg[1:] if seg and seg[0] in ("datasets", "spaces") else seg
            if len(rest) >= 2 and rest[1].endswith(".git") and rest[2:5] == ["info", "lfs", "objects"] and m == "POST":
                repo_id = f"{rest[0]}/{rest[1][:-4]}"
                action = rest[5:]
                if action == ["batch"]:
                    return "lfs-batch", lambda: self._lfs_batch(req, self._readable(req, repo_type, repo_id))
                if action == ["verify"]:
                    return "lfs-verify", lambda: self._lfs_verify(req, self._readable(req, repo_type, repo_id))
            if len(rest) >= 5 and rest[2] == "resolve" and m in ("GET", "HEAD"):
                repo_id, revision, path = f"{rest[0]}/{rest[1]}", rest[3], "/".join(rest[4:])
                return "resolve", lambda: self._resolve(req, self._readable(req, repo_type, repo_id), revision, path)
        raise HubError(404, f"no such endpoint: {m} {req.path}")

    def _route_api(self, req: _Request, repo_type: str, repo_id: str, rest: list[str]) -> tuple[str, Any]:
        m = req.method

        def repo() -> _Repo:
            return self._readable(req, repo_type, repo_id)

        op = rest[0] if rest else ""
        if not rest and m == "GET":
            return "repo-info", lambda: self._repo_info(req, repo(), None)
        if op == "revision" and len(rest) == 2 and m == "GET":
            return "repo-info", lambda: self._repo_info(req, repo(), rest[1])
        if op == "preupload" and len(rest) == 2 and m == "POST":
            return "preupload", lambda: self._preupload(req, repo(), rest[1])
        if op == "commit" and len(rest) == 2 and m == "POST":
            return "commit", lambda: self._commit(req, repo(), rest[1])
        if op in ("tag", "branch") and len(rest) == 2 and m == "POST":
            body = req.json() if req.body else {}
            if op == "tag":
                name = body.get("tag") or ""
                return "tag", lambda: self._create_ref(req, repo(), "tag", name, rest[1])
            start = body.get("startingPoint") or "main"
            return "branch", lambda: self._create_ref(req, repo(), "branch", rest[1], start)
        if op in ("tag", "branch") and len(rest) == 2 and m == "DELETE":
            return f"delete-{op}", lambda: self._delete_ref(req, repo(), op, rest[1])
        if op == "refs" and len(rest) == 1 and m == "GET":
            return "refs", lambda: self._refs(repo())
        if op == "commits" and len(rest) == 2 and m == "GET":
            return "commits", lambda: self._commits(repo(), rest[1])
        if op == "tree" and len(rest) >= 2 and m == "GET":
            return "tree", lambda: self._tree(req, repo(), rest[1], "/".join(rest[2:]).strip("/"))
        if op == "paths-info" and len(rest) == 2 and m == "POST":
            return "paths-info", lambda: self._paths_info(req, repo(), rest[1])
        raise HubError(404, f"no such endpoint: {m} {req.path}")

    def _readable(self, req: _Request, repo_type: str, repo_id: str) -> _Repo:
        repo = self._repo(repo_type, repo_id)
        if repo.private and not req.authorized:
            raise HubError(401, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def _handle(self, req: _Request) -> tuple[int, dict[str, str], bytes, str]:
        """Answer one request: (status, headers, body, route name)."""
        route = ""
        try:
            if req.bad_token:
                raise HubError(401, "Invalid credentials in Authorization header")
            route, thunk = self._route(req)
            with self._lock:
                pending = self._failures.get(route)
                if pending:
                    status, message = pending.pop(0)
                    raise HubError(status, message)
                result = thunk()
            if isinstance(result, tuple):
                status, headers, body = result
                return status, headers, body, route
            return 200, {"Content-Type": "application/json"}, json.dumps(result).encode(), route
        except HubError as err:
            headers = {"Content-Type": "application/json", "X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            return err.status, headers, json.dumps({"error": err.message, **err.extra}).encode(), route


def _parse_range(value: str, size: int) -> tuple[int, int]:
    """The (first, last) byte of a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range, clamped to the file."""
    unit, _, spec = value.partition("=")
    first, _, last = spec.split(",")[0].strip().partition("-")
    if unit.strip() != "bytes" or (not first and not last):
        raise HubError(416, f"unsupported range {value!r}")
    if not first:
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise HubError(416, f"range {value!r} is outside the file ({size} bytes)")
    return start, end


class _Request:
    """What an endpoint needs from one HTTP request."""

    def __init__(self, server: HubServer, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> None:
        parts = urlsplit(raw_path)
        self.method = method
        self.path = parts.path
        self.query = parts.query
        # Split before unquoting: revisions and paths arrive percent-encoded, "/" included (`refs%2Fpr%2F1`).
        self.segments = [unquote(s) for s in parts.path.split("/") if s]
        self.params = parse_qs(parts.query)
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body
        auth = self.headers.get("authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        self.authorized = given is not None and hmac.compare_digest(given.encode(), server.token.encode())
        self.bad_token = given is not None and not self.authorized

    def require_write(self) -> None:
        if not self.authorized:
            raise HubError(401, "You must be authenticated with a write token to do this")

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body or b"{}")
        except ValueError as exc:
            raise HubError(400, f"the request body is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise HubError(400, "the request body must be a JSON object")
        return value

    def flag(self, name: str) -> bool:
        return any(v.lower() in ("1", "true") for v in self.params.get(name, []))


def _make_handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the client pools connections

        def _read_body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline().strip():  # trailers
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _serve(self) -> None:
            body = self._read_body()
            headers = dict(self.headers.items())
            req = _Request(hub, self.command, self.path, headers, body)
            status, out_headers, payload, route = hub._handle(req)
            self.send_response(status)
            for key, value in out_headers.items():
                self.send_header(key, value)
            if "Content-Length" not in out_headers:
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD" and payload:
                self.wfile.write(payload)
            logged = LoggedRequest(method=self.command, path=req.path, query=req.query, status=status,
                                   headers=headers, body=None if route == "lfs-upload" or not body else body,
                                   route=route)
            with hub._lock:
                hub.requests.append(logged)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # the request log replaces stderr noise
            return

    return Handler


__all__ = ["DEFAULT_TOKEN", "HubServer", "LoggedRequest"]
