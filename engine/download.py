"""Image downloads from lists of URLs (the lesson's `urls_teddys.txt` files), safe for a server.

A URL typed by a user must not make the app fetch from inside its own network (server-side request
forgery): every host is resolved, every address it resolves to is checked, the connection goes to
the checked address (so a second DNS answer cannot swap it), and every redirect is checked again.
Only the standard library is used.
"""
from __future__ import annotations

import hashlib
import http.client
import io
import ipaddress
import os
import re
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urljoin, urlsplit

from engine.fsutil import atomic_write_bytes
from engine.images import ImageError, load_image

DEFAULT_TIMEOUT = 10.0                 # seconds, wall clock, per URL (redirects included)
DEFAULT_BATCH_TIMEOUT = 300.0          # seconds, wall clock, for a whole list
DEFAULT_MAX_BYTES = 10 * 1024 * 1024   # bytes per file, counted while reading
MAX_REDIRECTS = 5
MAX_URL_LENGTH = 2048
USER_AGENT = "DeepLearningLab/1.0 (teaching app; image download)"
_REDIRECTS = (301, 302, 303, 307, 308)
_EXTENSIONS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif",
               "BMP": ".bmp", "TIFF": ".tif"}
# The last label of a real host name is never all digits or hex; such a host is an IP address
# written in a form (2130706433, 0x7f.1, 0177.0.0.1, 127.1) that resolvers accept and people misread.
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)

Progress = Callable[[float, str], None]


class URLRefused(ValueError):
    """A URL the app will not fetch from; the message is a sentence for the user."""


class FetchFailed(ValueError):
    """A URL that was allowed but gave no usable file; the message is a sentence for the user."""


@dataclass
class Target:
    """A checked URL: where to connect (`ip`, pinned) and what to ask for."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    ip: str


@dataclass
class DownloadReport:
    """What `download_images` did: files saved and, for each URL that failed, the reason."""

    saved: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)   # (url, sentence)
    seconds: float = 0.0

    @property
    def n_saved(self) -> int:
        return len(self.saved)

    @property
    def n_failed(self) -> int:
        return len(self.failed)

    def summary(self) -> str:
        return (f"{self.n_saved} image{'s' * (self.n_saved != 1)} saved, "
                f"{self.n_failed} failed ({self.seconds:.1f} s).")


def _normalise_host(host: str) -> str:
    host = host.strip().strip("[]").lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _address_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address is not a public one (None when it is)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped   # ::ffff:127.0.0.1 is 127.0.0.1
    for kind, flag in (("an unspecified", ip.is_unspecified), ("a loopback", ip.is_loopback),
                       ("a link-local", ip.is_link_local), ("a multicast", ip.is_multicast),
                       ("a private", ip.is_private), ("a reserved", ip.is_reserved)):
        if flag:
            return f"{kind} address"
    if not ip.is_global:
        return "a non-public address"
    return None


def check_url(url: str, allow_hosts: Iterable[str] = ()) -> Target:
    """Check a URL and resolve its host; raise URLRefused unless it may be fetched.

    http and https only, no user name or password, no address written as a bare number; the host
    must resolve only to public addresses unless `allow_hosts` names it exactly (a name or an IP).
    """
    allow = {_normalise_host(h) for h in allow_hosts}
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise URLRefused(f"The address is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise URLRefused("The address is not a valid web address.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise URLRefused(f"Only http and https addresses are fetched, not {scheme or 'this one'}.")
    if parts.username is not None or parts.password is not None:
        raise URLRefused("The address contains a user name or password, which the app does not send.")
    if not parts.hostname:
        raise URLRefused("The address has no host name.")
    host = _normalise_host(parts.hostname)
    port = port or (443 if scheme == "https" else 80)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
        if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
            raise URLRefused(f"The host {host} is an address written as a number, which the app "
                             f"does not fetch from.") from None
        if not re.fullmatch(r"[a-z0-9._-]+", host):
            raise URLRefused(f"The host name {host!r} has characters a host name cannot have.")
    if literal is not None:
        addresses = [host]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, OSError):
            raise URLRefused(f"The host name {host} could not be found.") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        if not addresses:
            raise URLRefused(f"The host name {host} could not be found.")
    if host not in allow:
        # Every answer is checked, not just the first: a name that also resolves inside the network
        # is refused as a whole.
        for address in addresses:
            problem = _address_problem(ipaddress.ip_address(address.split("%", 1)[0]))
            if problem:
                shown = host if literal is not None else f"{host} ({address})"
                raise URLRefused(f"The host {shown} is {problem}, which the app does not fetch from.")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(url=url, scheme=scheme, host=host, port=port, path=path, ip=addresses[0])


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, never to a fresh DNS answer."""

    def __init__(self, target: Target, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self._ip = target.ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, target: Target, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout,
                         context=ssl.create_default_context())
        self._ip = target.ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = sock   # visible to the watchdog during the handshake too
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def fetch(url: str, *, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES,
          allow_hosts: Iterable[str] = ()) -> bytes:
    """GET a URL's body, following up to MAX_REDIRECTS redirects, each one checked again.

    Raises URLRefused for an address the app will not contact and FetchFailed for a time limit
    (`timeout` seconds, wall clock, for everything), a body over `max_bytes`, or an HTTP error.
    """
    allow = list(allow_hosts)
    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        target = check_url(url, allow)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchFailed(f"The download took longer than {timeout:g} s, so it was stopped.")
        cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
        conn = cls(target, timeout=remaining)
        timed_out = threading.Event()

        def _stop(conn: http.client.HTTPConnection = conn) -> None:
            # Socket timeouts count per read, so a server sending a byte a second would never
            # trip them: at the wall-clock deadline the socket is shut from this watchdog thread.
            timed_out.set()
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        watchdog = threading.Timer(remaining, _stop)
        watchdog.daemon = True
        watchdog.start()
        try:
            conn.request("GET", target.path, headers={"User-Agent": USER_AGENT, "Accept": "image/*"})
            resp = conn.getresponse()
            if resp.status in _REDIRECTS:
                location = resp.getheader("Location")
                if not location:
                    raise FetchFailed(f"The server redirected (HTTP {resp.status}) without saying where.")
                url = urljoin(target.url, location.strip())
                continue
            if resp.status != 200:
                raise FetchFailed(f"The server answered HTTP {resp.status} {resp.reason}.".rstrip())
            length = resp.getheader("Content-Length")
            if length and length.strip().isdigit() and int(length) > max_bytes:
                raise FetchFailed(f"The file is {int(length) / 1e6:.1f} MB, over the "
                                  f"{max_bytes / 1e6:g} MB limit.")
            buf = io.BytesIO()
            while True:
                chunk = resp.read1(64 * 1024)
                if timed_out.is_set() or time.monotonic() > deadline:
                    raise FetchFailed(f"The download took longer than {timeout:g} s, so it was stopped.")
                if not chunk:
                    break
                buf.write(chunk)
                if buf.tell() > max_bytes:
                    raise FetchFailed(f"The file is larger than the {max_bytes / 1e6:g} MB limit, "
                                      f"so the download was stopped.")
            return buf.getvalue()
        except (OSError, http.client.HTTPException) as exc:
            if timed_out.is_set():
                raise FetchFailed(f"The download took longer than {timeout:g} s, so it was stopped.") \
                    from None
            if isinstance(exc, ssl.SSLError):
                raise FetchFailed("The secure connection failed (the certificate could not be "
                                  "verified).") from None
            raise FetchFailed(f"The connection failed ({type(exc).__name__}).") from None
        finally:
            watchdog.cancel()
            conn.close()
    raise FetchFailed(f"The address redirected more than {MAX_REDIRECTS} times.")


def _clean_urls(urls: Iterable[str]) -> list[str]:
    out = []
    for url in urls:
        url = url.strip()
        if url and not url.startswith("#"):
            out.append(url)
    return list(dict.fromkeys(out))   # duplicates fetched once, order kept


def download_images(urls: Iterable[str], dest: str | os.PathLike, *, max_pics: int = 1000,
                    timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES,
                    workers: int = 8, allow_hosts: Iterable[str] = (),
                    batch_timeout: float = DEFAULT_BATCH_TIMEOUT,
                    progress: Progress | None = None) -> DownloadReport:
    """Download images into `dest`, keeping only files that decode (engine.images rules).

    The first `max_pics` distinct URLs are tried (as fastai does), `workers` at a time. Each URL gets
    `timeout` seconds wall clock and `max_bytes`; the whole list gets `batch_timeout` seconds, after
    which untried URLs fail with that reason. Files are saved as `<sha256[:16]>.<format>`, so names
    are safe and an image found twice is kept once. `allow_hosts` names hosts that may be private
    (tests use it for a local server). Returns a DownloadReport; a URL never raises.
    """
    start = time.monotonic()
    batch_deadline = start + batch_timeout
    todo = _clean_urls(urls)[:max(0, int(max_pics))]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    allow = list(allow_hosts)
    lock = threading.Lock()
    results: list[Path | str | None] = [None] * len(todo)
    done = [0]

    def one(i: int, url: str) -> None:
        try:
            left = batch_deadline - time.monotonic()
            if left <= 0:
                raise FetchFailed(f"Not tried: the list's time limit of {batch_timeout:g} s was reached.")
            data = fetch(url, timeout=min(timeout, left), max_bytes=max_bytes, allow_hosts=allow)
            load_image(data, max_bytes=max_bytes)
            results[i] = _save(data, dest, lock)
        except (URLRefused, FetchFailed, ImageError) as exc:
            results[i] = str(exc)
        except Exception as exc:  # one odd server must not stop the list
            results[i] = f"The download failed ({type(exc).__name__})."
        finally:
            if progress is not None:
                with lock:
                    done[0] += 1
                    progress(done[0] / len(todo), f"{done[0]} of {len(todo)} addresses tried")

    if todo:
        with ThreadPoolExecutor(max_workers=max(1, min(int(workers), len(todo))),
                                thread_name_prefix="dllab-download") as pool:
            list(pool.map(one, range(len(todo)), todo))
    report = DownloadReport(seconds=time.monotonic() - start)
    for url, result in zip(todo, results):
        if isinstance(result, Path):
            report.saved.append(result)
        else:
            report.failed.append((url, result or "The download failed."))
    return report


def _save(data: bytes, dest: Path, lock: threading.Lock) -> Path:
    from PIL import Image
    with Image.open(io.BytesIO(data)) as img:
        ext = _EXTENSIONS.get((img.format or "").upper(), ".img")
    path = dest / (hashlib.sha256(data).hexdigest()[:16] + ext)
    # A reader never sees half a file. The name is the content's hash, so a file already there
    # came from another address; `lock` makes the check and the rename one step between threads.
    try:
        atomic_write_bytes(path, data, fsync=False, overwrite=False, lock=lock)
    except FileExistsError:
        raise FetchFailed("The same image was already saved from another address.") from None
    return path


def read_url_file(path: str | os.PathLike) -> list[str]:
    """URLs from a text file, one per line; blank lines and lines starting with # are skipped."""
    return _clean_urls(Path(path).read_text(encoding="utf-8", errors="replace").splitlines())


def class_name_from_url_file(path: str | os.PathLike) -> str:
    """`urls_teddys.txt` -> `teddys` (the lesson's naming); any other file gives its stem."""
    stem = Path(path).stem
    return stem[5:] if stem.lower().startswith("urls_") and len(stem) > 5 else stem
