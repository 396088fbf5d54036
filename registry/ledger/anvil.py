"""The local ledger: an Anvil node (Foundry) run from the pinned npm package.

The binary comes from ``@foundry-rs/anvil``'s platform package
(``node_modules/@foundry-rs/anvil-<os>-<arch>/bin/anvil``, the layout of the package's own
``const.mjs``). Two ways to run it:

- :class:`LocalLedger`: a detached node bound to 127.0.0.1 whose chain lives in a data
  directory (``--state`` file, dumped on SIGTERM and every 30 s, reloaded at start, blocks
  and receipts included), with a pid file and a log. ``up`` is idempotent.
  Before each start the state is checked and repaired (see :meth:`LocalLedger.up`): Anvil
  writes its dump in place (a kill -9 mid-write leaves it cut short) and keeps a stale
  genesis block from every start in it (block 0's hash would change across restarts).
  With ``block_time`` it also mines an (empty) block every that many seconds besides the
  blocks of transactions (Anvil's ``--block-time`` with ``--mixed-mining``): an idle chain
  still reaches the registry's confirmation depth, so statuses end ``final``.
  With ``chain_id`` a new chain gets that chain id (two regions' ledgers on one machine);
  it is kept in the data directory, so a restart without it keeps the chain's id, and
  asking for another id for an existing chain is refused.
- :class:`AnvilProcess`: a throw-away child node on a free loopback port (tests, benchmarks).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from web3 import Web3
from web3.providers.rpc import HTTPProvider
from web3.types import RPCEndpoint

from registry.ledger.errors import AnvilError
from zk import strict_json

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
from registry.ledger.defaults import DEFAULT_BLOCK_TIME as DEFAULT_BLOCK_TIME  # noqa: E402 - re-exported
from registry.ledger.defaults import DEFAULT_PORT as DEFAULT_PORT  # noqa: E402
from registry.ledger.defaults import DEFAULT_CHAIN_ID as DEFAULT_CHAIN_ID  # noqa: E402
DATA_DIR_ENV = "ZKID_DATA_DIR"
ANVIL_BIN_ENV = "ZKID_ANVIL_BIN"
STATE_FILE = "anvil-state.json"
SAVED_STATE_FILE = "anvil-state.saved.json"  # ours, written atomically: last start or checkpoint
BROKEN_STATE_FILE = "anvil-state.broken.json"  # an unreadable dump, kept for inspection
PID_FILE = "anvil.pid"
CHAIN_ID_FILE = "anvil-chain-id"  # Anvil's state dump does not keep the chain id: we do
LOG_FILE = "anvil.log"
STATE_INTERVAL_S = 30

log = logging.getLogger(__name__)

# node platform/arch names used by @foundry-rs/anvil for its optional platform packages.
_PLATFORMS = {
    ("linux", "x86_64"): "linux-amd64",
    ("linux", "amd64"): "linux-amd64",
    ("linux", "aarch64"): "linux-arm64",
    ("linux", "arm64"): "linux-arm64",
    ("darwin", "x86_64"): "darwin-amd64",
    ("darwin", "arm64"): "darwin-arm64",
    ("win32", "amd64"): "win32-amd64",
    ("win32", "x86_64"): "win32-amd64",
}


def default_data_dir() -> Path:
    """``$ZKID_DATA_DIR`` or ``.data/`` under the current directory."""
    return Path(os.environ.get(DATA_DIR_ENV) or Path.cwd() / ".data")


def anvil_binary(root: Path = ROOT) -> Path:
    """Path of the Anvil binary from ``@foundry-rs/anvil``'s platform package (or ``$ZKID_ANVIL_BIN``)."""
    override = os.environ.get(ANVIL_BIN_ENV)
    if override:
        path = Path(override)
    else:
        key = (sys.platform, platform.machine().lower())
        suffix = _PLATFORMS.get(key)
        if suffix is None:
            raise AnvilError(f"@foundry-rs/anvil has no binary for {key[0]}/{key[1]}")
        exe = "anvil.exe" if sys.platform == "win32" else "anvil"
        path = root / "node_modules" / "@foundry-rs" / f"anvil-{suffix}" / "bin" / exe
    if not path.is_file() or not os.access(path, os.X_OK):
        raise AnvilError(f"anvil binary not found at {path} (install the pinned @foundry-rs/anvil with `npm ci`)")
    return path


def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether ``host:port`` cannot be bound (SO_REUSEADDR: a TIME_WAIT leftover does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def port_listened(port: int, host: str = HOST) -> bool:
    """Whether a process accepts connections on ``host:port`` now."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def wait_port_released(port: int, host: str = HOST, timeout: float = 65.0) -> bool:
    """Wait while ``host:port`` cannot be bound although nobody listens on it.

    After a node stops, the kernel keeps its half-closed connections (a client that never
    closed its keep-alive socket leaves them in FIN_WAIT2 for ``tcp_fin_timeout``, 60 s by
    default) on the port, and they block a new bind. Return whether the port is bindable;
    a listener on it (another program) ends the wait at once."""
    deadline = time.monotonic() + timeout
    while port_in_use(port, host):
        if port_listened(port, host) or time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


#: Seconds :meth:`LocalLedger.down` waits for a stopped node's port to stop answering.
PORT_CLOSE_TIMEOUT = 10.0

#: Ports drawn from the OS's randomness: a test framework that seeds ``random`` alike in
#: parallel worker processes must not make them draw the same ports.
_PORTS = random.SystemRandom()


def free_port(host: str = HOST) -> int:
    """A port that is free now, drawn below the kernel's ephemeral range: a port the
    kernel hands out (port 0) can be reused as the source port of any outgoing
    connection as soon as we let go of it, so a node restarted on it could find it taken."""
    for _ in range(200):
        port = _PORTS.randrange(20000, 32000)  # os.urandom: never a seeded sequence shared by processes
        if not port_in_use(port, host):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def make_web3(rpc_url: str, timeout: float = 30.0, retry: bool = True) -> Web3:
    """A Web3 on an HTTP endpoint. ``retry=False`` turns off web3's retries of failed reads
    (useful on loopback, where a failure is not transient and retries only delay the error)."""
    if retry:
        return Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    return Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None))


def rpc_ready(rpc_url: str) -> bool:
    try:
        return make_web3(rpc_url, timeout=2.0, retry=False).eth.chain_id > 0
    except Exception:
        return False


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; reaps it if it is our exited child, ignores zombies."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return True
    return True


def _cmdline(pid: int) -> str | None:
    path = Path(f"/proc/{pid}/cmdline")
    try:
        return path.read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def _wait_ready(rpc_url: str, proc: subprocess.Popen[bytes], timeout: float, log: Path | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = ""
            if log is not None and log.exists():
                lines = log.read_text(errors="replace").strip().splitlines()
                tail = f": {lines[-1]}" if lines else ""
            raise AnvilError(f"anvil exited at start (code {proc.returncode}){tail}")
        if rpc_ready(rpc_url):
            return
        time.sleep(0.05)
    proc.terminate()
    raise AnvilError(f"anvil did not answer on {rpc_url} within {timeout:.0f} s")


def _stop_pid(pid: int, timeout: float) -> None:
    """SIGTERM (Anvil then dumps its --state file), SIGKILL if it lingers."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while _pid_alive(pid):
        time.sleep(0.05)


def _read_state(path: Path) -> dict[str, Any] | None:
    """The Anvil state dump at ``path``; None if missing or unreadable (e.g. cut short).

    Parsed strictly (zk/strict_json.py): Anvil's dumps nest about 10 levels deep, far
    below the limit, and a file nested deeper would crash ``json.loads`` on the C stack."""
    try:
        state = strict_json.loads(path.read_bytes())
    except (OSError, ValueError):  # strict_json.JsonInputError is a ValueError
        return None
    return state if isinstance(state, dict) and isinstance(state.get("accounts"), dict) else None


def _best_number(state: dict[str, Any]) -> int:
    best = state.get("best_block_number")
    if isinstance(best, int):
        return best
    try:
        return int(str(state["block"]["number"]), 16)
    except (KeyError, TypeError, ValueError):
        return -1


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` so that a crash leaves the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _rlp(item: bytes | list[bytes]) -> bytes:
    """Recursive-length prefix encoding (Ethereum Yellow Paper, appendix B) of bytes or a list of bytes."""
    if isinstance(item, list):
        payload, base = b"".join(_rlp(x) for x in item), 0xC0
    else:
        if len(item) == 1 and item[0] < 0x80:
            return item
        payload, base = item, 0x80
    if len(payload) <= 55:
        return bytes([base + len(payload)]) + payload
    size = len(payload).to_bytes((len(payload).bit_length() + 7) // 8, "big")
    return bytes([base + 55 + len(size)]) + size + payload


# Header fields in their RLP order (Yellow Paper, then EIP-1559, -4895, -4844, -4788, -7685);
# the later ones are optional. The integers are encoded without leading zeros.
_HEADER_FIELDS = (
    "parentHash", "sha3Uncles", "miner", "stateRoot", "transactionsRoot", "receiptsRoot", "logsBloom",
    "difficulty", "number", "gasLimit", "gasUsed", "timestamp", "extraData", "mixHash", "nonce",
    "baseFeePerGas", "withdrawalsRoot", "blobGasUsed", "excessBlobGas", "parentBeaconBlockRoot", "requestsHash",
)  # fmt: skip
_HEADER_INTS = frozenset(
    {"difficulty", "number", "gasLimit", "gasUsed", "timestamp", "baseFeePerGas", "blobGasUsed", "excessBlobGas"}
)


def _header_hash(header: Any) -> str | None:
    """Block hash (keccak of the RLP header) of a dumped header; None for a layout we do not know."""
    if not isinstance(header, dict) or tuple(header) != _HEADER_FIELDS[: len(header)] or len(header) < 15:
        return None
    try:
        items = []
        for name in _HEADER_FIELDS[: len(header)]:
            if name in _HEADER_INTS:
                n = int(str(header[name]), 16)
                items.append(n.to_bytes((n.bit_length() + 7) // 8, "big"))
            else:
                items.append(bytes.fromhex(str(header[name]).removeprefix("0x")))
    except (ValueError, OverflowError):
        return None
    return Web3.keccak(_rlp(items)).to_0x_hex()


def _block_number(block: Any) -> int:
    try:
        return int(str(block["header"]["number"]), 16)
    except (KeyError, TypeError, ValueError):
        return -1


def _drop_stale_genesis(state: dict[str, Any]) -> int:
    """Keep only the chain's own block 0 in a state dump; return how many were dropped.

    Anvil (1.7.1) builds a genesis block stamped with the current time at every start, keeps it
    beside the loaded blocks and dumps it with them; loading a dump maps number 0 to whichever
    block 0 comes last in it (the dump's order is a hash map's), so after a few restarts
    block 0's hash changes. The chain's own genesis is block 1's parent; without block 1 the
    oldest one is kept (the others were made by later starts).
    """
    blocks = state.get("blocks")
    if not isinstance(blocks, list):
        return 0
    genesis = [b for b in blocks if _block_number(b) == 0]
    if len(genesis) <= 1:
        return 0
    parents = {str(b["header"].get("parentHash", "")).lower() for b in blocks if _block_number(b) == 1}
    own = [b for b in genesis if _header_hash(b["header"]) in parents]
    if len(own) != 1:
        own = [min(genesis, key=lambda b: int(str(b["header"].get("timestamp", "0x0")), 16))]
    state["blocks"] = [b for b in blocks if _block_number(b) != 0 or b is own[0]]
    return len(genesis) - 1


@dataclass(frozen=True)
class LedgerStatus:
    running: bool
    data_dir: str
    state_file: str
    log_file: str
    pid: int | None = None
    port: int | None = None
    rpc_url: str | None = None
    chain_id: int | None = None
    block_number: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LocalLedger:
    """A detached Anvil node whose chain persists in ``data_dir``."""

    def __init__(
        self,
        data_dir: Path | str | None = None,
        port: int = DEFAULT_PORT,
        host: str = HOST,
        block_time: int | None = None,
        chain_id: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.port = port
        self.host = host
        if block_time is not None and block_time < 0:
            raise ValueError("block_time must be >= 0 seconds (0: no timer)")
        if chain_id is not None and not 1 <= chain_id < 1 << 64:
            raise ValueError("chain_id must be in [1, 2**64)")
        self.chain_id = chain_id  # None: the chain's own (a new chain: DEFAULT_CHAIN_ID)
        self.chain_id_file = self.data_dir / CHAIN_ID_FILE
        self.block_time = block_time or None  # None / 0: blocks only for transactions
        self.state_file = self.data_dir / STATE_FILE
        self.saved_state_file = self.data_dir / SAVED_STATE_FILE
        self.pid_file = self.data_dir / PID_FILE
        self.log_file = self.data_dir / LOG_FILE

    def _read_pid_file(self) -> dict[str, Any] | None:
        try:
            info = strict_json.loads(self.pid_file.read_bytes())
            return info if isinstance(info, dict) and isinstance(info.get("pid"), int) else None
        except (OSError, ValueError):
            return None

    def _running_info(self) -> dict[str, Any] | None:
        """The pid file's content if that process is alive and is our Anvil; else None."""
        info = self._read_pid_file()
        if info is None:
            return None
        pid = int(info["pid"])
        if not _pid_alive(pid):
            return None
        cmd = _cmdline(pid)
        if cmd is not None and ("anvil" not in cmd or str(self.state_file) not in cmd):
            return None  # the pid was reused by another program
        return info

    def status(self) -> LedgerStatus:
        paths = (str(self.data_dir), str(self.state_file), str(self.log_file))
        info = self._running_info()
        if info is None:
            return LedgerStatus(False, *paths)
        rpc_url = f"http://{info.get('host', HOST)}:{info['port']}"
        chain_id = block = None
        try:
            w3 = make_web3(rpc_url, timeout=3.0, retry=False)
            chain_id, block = int(w3.eth.chain_id), int(w3.eth.block_number)
        except Exception:
            pass
        return LedgerStatus(
            True,
            *paths,
            pid=int(info["pid"]),
            port=int(info["port"]),
            rpc_url=rpc_url,
            chain_id=chain_id,
            block_number=block,
        )

    def _prepare_state(self) -> bool:
        """Choose, repair and save the state Anvil is to load; False if there is none (a new chain).

        The candidates are Anvil's last dump and our saved copy (the state of the last start
        or of a :meth:`checkpoint`); the one with more blocks wins (a tie: Anvil's, the newer).
        A dump that cannot be read was cut short by a kill -9 mid-write (Anvil truncates the
        file, then writes it): it is moved aside and the saved copy is used. The choice,
        without stale genesis blocks, is written atomically to both files.
        """
        dumped = _read_state(self.state_file)
        saved = _read_state(self.saved_state_file)
        if dumped is None and self.state_file.exists():
            if saved is None:
                raise AnvilError(
                    f"{self.state_file} cannot be read (a state dump cut short?) and there is no saved copy; "
                    "move it away to start a new chain"
                )
            os.replace(self.state_file, self.data_dir / BROKEN_STATE_FILE)
            log.warning(
                "anvil state file unreadable (kept as %s); restarting from the saved copy at block %d",
                BROKEN_STATE_FILE,
                _best_number(saved),
            )
        candidates = [state for state in (dumped, saved) if state is not None]
        if not candidates:
            return False
        state = max(candidates, key=_best_number)  # max keeps the first of equals: the dump
        _drop_stale_genesis(state)
        data = json.dumps(state).encode()
        _write_atomic(self.saved_state_file, data)
        _write_atomic(self.state_file, data)
        return True

    def _remembered_chain_id(self, existing: bool) -> int | None:
        """The chain id of the data directory's chain: the one saved at its creation; a
        chain made before chain ids were saved has Anvil's default. None: no chain yet."""
        try:
            return int(self.chain_id_file.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return DEFAULT_CHAIN_ID if existing else None

    def _check_chain_id(self, actual: int | None, what: str) -> None:
        if self.chain_id is not None and actual is not None and actual != self.chain_id:
            raise AnvilError(
                f"{what} has chain id {actual}, not {self.chain_id}: leave out the chain id, or use another data directory"
            )

    def checkpoint(self, timeout: float = 120.0) -> None:
        """Save the running node's chain now, atomically, as the saved copy the next start considers.

        Anvil itself dumps only every 30 s and at exit: call this when a kill -9 must not lose
        what was just done (a new chain's genesis, a deployment).
        """
        info = self._running_info()
        if info is None:
            raise AnvilError("the local ledger is not running")
        rpc_url = f"http://{info.get('host', HOST)}:{info['port']}"
        try:
            reply = make_web3(rpc_url, timeout=timeout, retry=False).provider.make_request(
                RPCEndpoint("anvil_dumpState"), []
            )
            state = strict_json.loads(gzip.decompress(bytes.fromhex(str(reply["result"]).removeprefix("0x"))))
        except Exception as exc:
            raise AnvilError(f"cannot save the local ledger's state ({type(exc).__name__})") from exc
        if not isinstance(state, dict):
            raise AnvilError("cannot save the local ledger's state (unexpected anvil_dumpState reply)")
        _drop_stale_genesis(state)
        _write_atomic(self.saved_state_file, json.dumps(state).encode())

    def up(self, timeout: float = 30.0, port_flag: str = "--port") -> tuple[LedgerStatus, bool]:
        """Start the node unless it already runs; return (status, started_now).

        The chain is the data directory's (see :meth:`_prepare_state`); a new chain is saved
        at once (:meth:`checkpoint`) so that its genesis survives a kill -9 before the first dump.
        ``port_flag`` is the option a busy-port error names (``--ledger-port`` for ``zkid up``).
        """
        current = self.status()
        if current.running:
            self._check_chain_id(current.chain_id, f"the ledger running for {self.data_dir}")
            return current, False
        self.pid_file.unlink(missing_ok=True)
        binary = anvil_binary()
        if not wait_port_released(self.port, self.host):
            holder = "another process listens on it" if port_listened(self.port, self.host) else "closing connections still hold it"
            raise AnvilError(
                f"ledger port {self.port} on {self.host} is already in use ({holder}): choose another with {port_flag}"
                + (" (or ZKID_LEDGER_PORT)" if port_flag == "--ledger-port" else "")
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        existing = self._prepare_state()
        remembered = self._remembered_chain_id(existing)
        if existing:
            self._check_chain_id(remembered, f"the chain of {self.data_dir}")
        chain_id = (remembered if existing else None) or self.chain_id or DEFAULT_CHAIN_ID
        _write_atomic(self.chain_id_file, f"{chain_id}\n".encode())
        args = [
            str(binary),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--state",
            str(self.state_file),
            "--state-interval",
            str(STATE_INTERVAL_S),
            "--chain-id",
            str(chain_id),
        ]
        if self.block_time:
            # Interval blocks besides the automined ones (not instead: a transaction is
            # still mined at once).
            args += ["--block-time", str(self.block_time), "--mixed-mining"]
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the CLI process and its terminal
                cwd=self.data_dir,
            )
        rpc_url = f"http://{self.host}:{self.port}"
        self.pid_file.write_text(json.dumps({"pid": proc.pid, "port": self.port, "host": self.host}) + "\n")
        try:
            _wait_ready(rpc_url, proc, timeout, self.log_file)
            if not existing:
                self.checkpoint()
        except AnvilError:
            if proc.poll() is None:
                _stop_pid(proc.pid, timeout)
            self.pid_file.unlink(missing_ok=True)
            raise
        return self.status(), True

    def down(self, timeout: float = 60.0) -> bool:
        """Stop the node (its state is dumped first); return whether it was running."""
        info = self._running_info()
        if info is None:
            self.pid_file.unlink(missing_ok=True)  # a stale file from a crash, if any
            return False
        _stop_pid(int(info["pid"]), timeout)
        # The leader thread of a multi-threaded process shows as a zombie while its other
        # threads still exit and hold its sockets: wait for the port to stop answering, so
        # that an up() right after this one finds it free.
        host, port = str(info.get("host", HOST)), int(info["port"])
        deadline = time.monotonic() + PORT_CLOSE_TIMEOUT
        while port_listened(port, host) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True


class AnvilProcess:
    """A throw-away Anvil child process on a free loopback port (no persisted state).

    Use as a context manager or call :meth:`stop`. ``extra_args`` go to anvil as they are
    (e.g. ``["--gas-limit", "100000000"]``).
    """

    def __init__(self, extra_args: Sequence[str] = (), timeout: float = 30.0, log_file: Path | None = None) -> None:
        binary = anvil_binary()
        last_error: AnvilError | None = None
        for _ in range(5):  # another process may grab the free port before anvil binds it
            port = free_port()
            args = [str(binary), "--host", HOST, "--port", str(port), *extra_args]
            log = log_file.open("ab") if log_file is not None else None
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log if log is not None else subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            if log is not None:
                log.close()
            try:
                _wait_ready(f"http://{HOST}:{port}", proc, timeout, log_file)
            except AnvilError as exc:
                last_error = exc
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                continue
            self.proc = proc
            self.port = port
            self.rpc_url = f"http://{HOST}:{port}"
            self.w3 = make_web3(self.rpc_url, timeout=120.0, retry=False)
            return
        raise last_error or AnvilError("anvil did not start")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> AnvilProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
