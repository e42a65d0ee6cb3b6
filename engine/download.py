"""Image downloads from lists of URLs (the lesson's `urls_teddys.txt` files), safe for a server.

A URL typed by a user must not make the app fetch from inside its own network (server-side request
forgery): every host is resolved, every address it resolves to is checked (an IPv6 address carrying
an IPv4 one, as 6to4 or NAT64 do, by that one too), the connection goes to the checked address (so
a second DNS answer cannot swap it), and every redirect is checked again. Standard library only.
A download stops within about WATCH_S s of `cancelled()` turning true (Cancel, or the unwatched-job
timeout): a connect waits in slices that long, and a watchdog thread shuts a slow read's socket.
"""
from __future__ import annotations

import errno
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
from typing import Any, Callable, Iterable
from urllib.parse import urljoin, urlsplit

from engine.fsutil import atomic_write_bytes
from engine.images import ImageError, load_image

DEFAULT_TIMEOUT = 10.0                 # seconds, wall clock, per URL (redirects included)
DEFAULT_BATCH_TIMEOUT = 300.0          # seconds, wall clock, for a whole list
DEFAULT_MAX_BYTES = 10 * 1024 * 1024   # bytes per file, counted while reading
MAX_REDIRECTS = 5
MAX_URL_LENGTH = 2048
WATCH_S = 0.2                          # seconds between looks at the deadline and at cancelled()
CANCELLED = "Not finished: the download was cancelled."
USER_AGENT = "DeepLearningLab/1.0 (teaching app; image download)"
_REDIRECTS = (301, 302, 303, 307, 308)
_EXTENSIONS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif",
               "BMP": ".bmp", "TIFF": ".tif"}
# The last label of a real host name is never all digits or hex; such a host is an IP address
# written in a form (2130706433, 0x7f.1, 0177.0.0.1, 127.1) that resolvers accept and people misread.
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)

Progress = Callable[[float, str], None]
#: cancelled() -> True once the download should stop (polled from worker threads).
Cancelled = Callable[[], bool]


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
    cancelled: bool = False          # cancelled() turned true before every URL was tried

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


# IPv6 prefixes whose last 32 bits are an IPv4 address: NAT64's well-known prefix, IPv4-compatible
# (::a.b.c.d, deprecated) and IPv4-translated (SIIT). All are also "reserved" to Python.
_LOW32 = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "::/96", "::ffff:0:0:0/96"))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries in a form that can route to it: IPv4-mapped, 6to4
    (2002::/16), Teredo's client (2001::/32), NAT64, IPv4-compatible and IPv4-translated; None
    when it carries none (:: and ::1 are IPv6's own unspecified and loopback addresses)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if int(ip) > 1 and any(ip in net for net in _LOW32):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _address_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address is not a public one (None when it is)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            problem = _address_problem(inner)
            if problem:
                return f"{problem} (it carries the IPv4 address {inner})"
            if ip.ipv4_mapped is not None:
                return None   # ::ffff:a.b.c.d is a.b.c.d, which is public
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


def _open_socket(ip: str, port: int, deadline: float, cancelled: Cancelled) -> socket.socket:
    """A TCP connection to ip:port, waited for in slices of WATCH_S, so a silent host is given up at
    the deadline or on cancel (a socket still connecting cannot be shut from another thread)."""
    import selectors
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        err = sock.connect_ex((ip, port))
        if err in (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK, errno.EINTR):
            with selectors.DefaultSelector() as sel:   # poll/epoll: no limit on descriptor numbers
                sel.register(sock, selectors.EVENT_WRITE)
                while True:
                    if cancelled():
                        raise FetchFailed(CANCELLED)
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise socket.timeout("connect")
                    if sel.select(min(WATCH_S, left)):
                        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        break
        if err:
            raise OSError(err, os.strerror(err))
        sock.setblocking(True)
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        return sock
    except BaseException:
        sock.close()
        raise


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, never to a fresh DNS answer (see _open_socket)."""

    def __init__(self, target: Target, deadline: float, cancelled: Cancelled, **options: Any):
        super().__init__(target.host, target.port, timeout=max(deadline - time.monotonic(), 0.01),
                         **options)
        self._ip, self._deadline, self._cancelled = target.ip, deadline, cancelled

    def connect(self) -> None:
        self.sock = _open_socket(self._ip, self.port, self._deadline, self._cancelled)


class _PinnedHTTPSConnection(_PinnedHTTPConnection, http.client.HTTPSConnection):
    def __init__(self, target: Target, deadline: float, cancelled: Cancelled):
        super().__init__(target, deadline, cancelled, context=ssl.create_default_context())

    def connect(self) -> None:
        super().connect()   # self.sock is visible to the watchdog during the handshake too
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


class _Watchdog(threading.Thread):
    """Shuts a connection's socket at the wall-clock deadline or on cancel, looking every WATCH_S s
    (socket timeouts count per read: a server sending a byte a second would never trip them)."""

    def __init__(self, conn: http.client.HTTPConnection, deadline: float, cancelled: Cancelled):
        super().__init__(daemon=True, name="dllab-download-watch")
        self.conn, self.deadline, self.cancelled = conn, deadline, cancelled
        self.done = threading.Event()
        self.why: str | None = None   # "time" or "cancel" once it has shut the socket

    def reason(self) -> str | None:
        """Why the fetch must stop now ("time", "cancel"), or None."""
        if self.why is None:
            try:
                stop = self.cancelled()
            except Exception:  # a broken callable must not keep a download alive
                stop = True
            if stop:
                self.why = "cancel"
            elif time.monotonic() >= self.deadline:
                self.why = "time"
        return self.why

    def run(self) -> None:
        while not self.done.wait(max(min(WATCH_S, self.deadline - time.monotonic()), 0.0)):
            if self.reason() is None:
                continue
            sock = self.conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return


def _redirect(base: str, location: str | None, status: int) -> str:
    """Where a redirect points; FetchFailed for nowhere or a malformed address (http://[1.2.3.4]/)."""
    if not location:
        raise FetchFailed(f"The server redirected (HTTP {status}) without saying where.")
    try:
        return urljoin(base, location.strip())
    except ValueError:
        raise FetchFailed(f"The server redirected (HTTP {status}) to something that is not a "
                          "valid web address.") from None


def fetch(url: str, *, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES,
          allow_hosts: Iterable[str] = (), cancelled: Cancelled | None = None) -> bytes:
    """GET a URL's body, following up to MAX_REDIRECTS redirects, each one checked again.

    Raises URLRefused for an address the app will not contact and FetchFailed for a time limit
    (`timeout` seconds, wall clock, for everything), a body over `max_bytes`, an HTTP error, or
    `cancelled()` turning true (noticed within about WATCH_S seconds, whatever the server does).
    """
    allow = list(allow_hosts)
    cancelled = cancelled or (lambda: False)
    deadline = time.monotonic() + timeout
    too_long = f"The download took longer than {timeout:g} s, so it was stopped."
    for _ in range(MAX_REDIRECTS + 1):
        if cancelled():
            raise FetchFailed(CANCELLED)
        target = check_url(url, allow)
        if deadline - time.monotonic() <= 0:
            raise FetchFailed(too_long)
        cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
        conn = cls(target, deadline, cancelled)
        watchdog = _Watchdog(conn, deadline, cancelled)
        watchdog.start()
        try:
            conn.request("GET", target.path, headers={"User-Agent": USER_AGENT, "Accept": "image/*"})
            resp = conn.getresponse()
            if resp.status in _REDIRECTS:
                url = _redirect(target.url, resp.getheader("Location"), resp.status)
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
                why = watchdog.reason()
                if why is not None:
                    raise FetchFailed(CANCELLED if why == "cancel" else too_long)
                if not chunk:
                    break
                buf.write(chunk)
                if buf.tell() > max_bytes:
                    raise FetchFailed(f"The file is larger than the {max_bytes / 1e6:g} MB limit, "
                                      f"so the download was stopped.")
            return buf.getvalue()
        except (OSError, http.client.HTTPException) as exc:
            why = watchdog.reason()
            if why is not None or isinstance(exc, socket.timeout):
                raise FetchFailed(CANCELLED if why == "cancel" else too_long) from None
            if isinstance(exc, ssl.SSLError):
                raise FetchFailed("The secure connection failed (the certificate could not be "
                                  "verified).") from None
            raise FetchFailed(f"The connection failed ({type(exc).__name__}).") from None
        finally:
            watchdog.done.set()
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
                    progress: Progress | None = None,
                    cancelled: Cancelled | None = None) -> DownloadReport:
    """Download images into `dest`, keeping only files that decode (engine.images rules).

    The first `max_pics` distinct URLs are tried (as fastai does), `workers` at a time. Each URL gets
    `timeout` seconds wall clock and `max_bytes`; the whole list gets `batch_timeout` seconds, after
    which untried URLs fail with that reason. Files are saved as `<sha256[:16]>.<format>`, so names
    are safe and an image found twice is kept once. `allow_hosts` names hosts that may be private
    (tests use it for a local server). Once `cancelled()` is true, URLs in progress stop (within
    about WATCH_S s) and the rest are not tried. Returns a DownloadReport; a URL never raises.
    """
    start = time.monotonic()
    batch_deadline = start + batch_timeout
    todo = _clean_urls(urls)[:max(0, int(max_pics))]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    allow = list(allow_hosts)
    stop = cancelled or (lambda: False)
    lock = threading.Lock()
    results: list[Path | str | None] = [None] * len(todo)
    done = [0]

    def one(i: int, url: str) -> None:
        try:
            if stop():
                raise FetchFailed("Not tried: the download was cancelled.")
            left = batch_deadline - time.monotonic()
            if left <= 0:
                raise FetchFailed(f"Not tried: the list's time limit of {batch_timeout:g} s was reached.")
            data = fetch(url, timeout=min(timeout, left), max_bytes=max_bytes, allow_hosts=allow,
                         cancelled=stop)
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
    report = DownloadReport(seconds=time.monotonic() - start, cancelled=bool(todo) and stop())
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
