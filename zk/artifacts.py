"""The pinned Semaphore v4 ceremony artifacts (npm ``@zk-kit/semaphore-artifacts`` 4.13.0).

For each tree depth D in 1..32 the package ships ``semaphore-D.wasm`` (circom witness
generator), ``semaphore-D.zkey`` (Groth16 proving key from the trusted-setup ceremony)
and ``semaphore-D.json`` (snarkjs verification key). They come from the ceremony redone
after the BinaryMerkleRoot fix (zk-kit.circom#24) and are the keys that
``@semaphore-protocol/proof`` 4.14.3 and ``SemaphoreVerifier.sol`` use.

The files are installed by ``npm ci`` (tarball checked against package-lock.json); this
module pins the SHA-256 of every file so that nothing else is ever loaded. ``groth16py``
does not validate the points of a ``.zkey``, so the hash check is what makes the
proving key trustworthy. Consumers should use :meth:`Artifacts.read`, which hashes the
very bytes it returns (no window between check and use).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

MIN_DEPTH = 1
MAX_DEPTH = 32
PACKAGE = "@zk-kit/semaphore-artifacts"
VERSION = "4.13.0"
ENV_VAR = "ZKID_ARTIFACTS_DIR"

Kind = Literal["wasm", "zkey", "vkey"]
_SUFFIX: dict[Kind, str] = {"wasm": ".wasm", "zkey": ".zkey", "vkey": ".json"}


class ArtifactError(ValueError):
    """A ceremony artifact is missing or is not the pinned file."""


class _Pins(NamedTuple):
    wasm: str
    zkey: str
    vkey: str


# SHA-256 of the files of @zk-kit/semaphore-artifacts 4.13.0, as installed by `npm ci`.
PINNED_SHA256: dict[int, _Pins] = {
    1: _Pins(
        wasm="70289ef3bdfa86e97debdb227e76721b392f45b5e73d5e7136d93a04dce0dff9",
        zkey="471a978875f91411b21ba5a2fbea41df30ec45eb23e3ac045edf7f30a2846a08",
        vkey="2138d5bba77020ed8e1f1cc1983c33d8b2fc1d71e9d22592b3b72b31bfa470fb",
    ),
    2: _Pins(
        wasm="877a989a8881ff6651866cfa32088f60e4abcb02a26f2e995868dfabd7f9385b",
        zkey="110e2d9de78730aa4f5c78c75017cfe4d769b4b7ce60f58484fb14733d7b0f35",
        vkey="8f9679c6a80cc37c664818be7fcadda1f742cc4f11425edc19150ab91ec76c71",
    ),
    3: _Pins(
        wasm="48e15502f710be0a623d573d472edeeaf918fd5eee0b2ca9b407c4e4f20d12f2",
        zkey="c36653c42784df35a01f3d93415af9ad8292a540f8deb134a6a34a01752a89d3",
        vkey="82027b298e7321be5385dc29ac8727bddbaffd9e06bd54f6b84fca826ee87126",
    ),
    4: _Pins(
        wasm="ec0ed0ae7eb0264070b36a247cf4aad8157c5550f0731d3462019526e5e9ae4f",
        zkey="90c94bad7ad97eeb9314750e443d84da783e38a21f55538d72b10d258064f6e6",
        vkey="7e27e9d01b1bdd5f86e9932876fed32fd267f430224869966f83a43b643d0d2d",
    ),
    5: _Pins(
        wasm="74ee373fc66bf81ca89de52602b555f16ef0e54c0e36e5b69c6e109d146acfb5",
        zkey="a1431c24dc49e98d07d48e7bdacc002875bcb02a799d9156c6aa6bcbe0838926",
        vkey="2c599e5030577a037660978877ec296e6e0a9892e42ff6caf14361b70464a84a",
    ),
    6: _Pins(
        wasm="432293aa5c8e7d503148824ff17a8ad7318058a656af568837f30675d867827e",
        zkey="24a7ef2c7f4c809a502e876cb3295535a73710ec7bc3827b5a15018e434a674a",
        vkey="b97ff712685f92afca11f999d9cbe044ac3eadf0f052500f1a6f95e3ee3c4032",
    ),
    7: _Pins(
        wasm="3ba75768d5dfbee9d52b732b69eefb1725c8c356a3de9c2f2a71dbc401a0ea61",
        zkey="d77851ee4bd496c6b5f70fbfa550f113a89bad972efd4c541267e566163d0600",
        vkey="2335e649e97e91926c8783815872836ee881b4619578faaa53aec3a6a3cb6559",
    ),
    8: _Pins(
        wasm="4edc07444a1d48d09014c963e315d3351b6e12838d83fcb1962071614b1c94b9",
        zkey="d02521afe7133a97421244374d4bc005c1ebd7d7cf7c51e88b7e99fdaf183146",
        vkey="ebf7159117dad691d08ddf1e4a4e49b841aa72652c599e9b84940d7aa4b01bac",
    ),
    9: _Pins(
        wasm="a75f9d92dc826629e3490596ec99055bbecc006050dee6bf8e81b99c9a54f16a",
        zkey="0eae4df76414b885a2f0793740330de896ab13f07504f97c81b5fe92868ce90e",
        vkey="dc73b4f50902b5100acd1a6c4abe6d531ad0bfd59f16430684768dedbefc6c08",
    ),
    10: _Pins(
        wasm="1e9e1e3ad9917164bc96c751e32fae724400b92063f5a2cfd22ca64674bf4f96",
        zkey="f644af6753be9d48454d8f9bb74bf2e9a416dd7d1a704c3cf1d50e535969a19a",
        vkey="ca34afcbb281cd180a4ee553023d3f020440d519f5d093ebde97e26c09c0842d",
    ),
    11: _Pins(
        wasm="8261bedcadf797674ebf89fa3ed09e4cd37747bb77c8b21379f9d7c582ed8189",
        zkey="04d46b1be01a5ff56129318e64f3ec2c833277674a6cb787ca562893de2ec49d",
        vkey="50f918780bdb9786f62163e55f610f98f444025ea65dd9527d084776ebfdddc5",
    ),
    12: _Pins(
        wasm="3b7c0b34b00e5c87946d6e1689c05ce75f2dd93618ceb803dd369ff6ad65876e",
        zkey="3beb3d676455cca9c7c66f34a6147f8ba213b1db1812e2c1be2c00f129477229",
        vkey="37bfc9abf4a5c58f5ce43fc362c3179ac63c587a200eb030d9617ac7d727e8c4",
    ),
    13: _Pins(
        wasm="517a55315564fc1622aee17df0ec4579aacf7f2c21753887016f728c9ce1596c",
        zkey="54378ba8d31fff7c89857228cb9dc089e837f6c8b256ab0a1b8c8cdbdcf815f9",
        vkey="c8ca9d80c81657f62d8b3e977b41126259f8c1def3edd3a5e94ea4c3db29d451",
    ),
    14: _Pins(
        wasm="7a525e7c179b16731de40f902563200480dce98d7015ddda634de5da344b9f6b",
        zkey="2e85d8f4a841bc0d1e223316082d3f64c855ff52083a53278dae92f49b54ff9e",
        vkey="d8a8e9f6d836638a2135eb2fcf77db6b8b17247f160fda49cf7819927575bd37",
    ),
    15: _Pins(
        wasm="d6c588754c6f1af9555cb14bbf01091116c7dbc605adc3cedd4ed644a5800c60",
        zkey="076f4d7e6e2484f4cd19226b5ef622f36f6de7a99e44570e4b29c9d4fb0dfca0",
        vkey="d28e3b1ac7ae63a23205da8e40e156465143b6c7cff8595d12a1a37f5d773ca2",
    ),
    16: _Pins(
        wasm="06df31461d17db86897fc234f0e6e5f5e2f6add1b8c821b5c6ae75030b3e0d7c",
        zkey="948763c7315a337b7722c0344a28af4be66fbbc618474d6dbe9036e799d1a3b5",
        vkey="c0fc89249ca42a2763ec4e521bf43bc8b3f35307258f6ddcaaed6047c189680e",
    ),
    17: _Pins(
        wasm="c8a9fa66d491cc6a14daba40060d53659c99ca9d9b1277cc48c1a174cb5947c4",
        zkey="5c750bf1fdec2b1bb4b04f66a4e64c08215c9f3f862ffb3f35de511cc6417112",
        vkey="e514dbfb437aadea66d0e9d57da2b1ed1fea53b7bea1817220314d356233e3cc",
    ),
    18: _Pins(
        wasm="70e2ac9d915265708742c4d8dbbe20662b22f701d9e78745c5bc2a0262093317",
        zkey="ef278d79e103d6944be80428ad65acdef22bdd6fe32f95a8f0ed182e1b6601ce",
        vkey="e96569cd9871a7db125c50ddaf830cfbd0880368e9d3df747d5a09b599aa7568",
    ),
    19: _Pins(
        wasm="18f939aca1233779a75c8bbfb69f0ffb6a146a88b2c1160cb9265f9357f1a706",
        zkey="7329ed1332c163788b36da10be73ac3eb004fbf1b8b308e1778cf815dd209e3b",
        vkey="10182fdeb41ba8826bfd4acf7cff9825d8a618220f8c4992be460a3a009021f7",
    ),
    20: _Pins(
        wasm="6f71e55586929e520e76027ebe067daac8b41e2f4b8057313a5fd0304e1e44ee",
        zkey="33f9a067a80c7daf90e085449073613a9559a1904dd40aeb6d603afb7988c2cc",
        vkey="6fda771369c19517c8f7575cb9f1d18a8846e46baa1dc0c032bac9492c29559e",
    ),
    21: _Pins(
        wasm="5bb3cb390c6a62c7317c3004d7a8f3fab44bcc4d879d327ec1a26a9e983025b5",
        zkey="f5c502f249c5b11d8f87889a3c8a42f9b6b6c30ac0d37629c389a15883191793",
        vkey="a1b3541bf90783bc6cb73a15e48717b5210b1d9dd4193077a96257ca542c4877",
    ),
    22: _Pins(
        wasm="79d95ebdac70924fff9c507911693cc5f5edc5330a96d86b2123b53f03b58642",
        zkey="2e5c4eec112cbaab97cb54897aa4640acce0b66a98d5a612840d794403dfdbd7",
        vkey="5778a28174e2a5a08c56f80552dd546b7c1f149ffd8bc00fb9c2813ae433a1b9",
    ),
    23: _Pins(
        wasm="53a29c9237badd0965a3d0e004dc727a455071ac48f4050c9febcc0a4708725d",
        zkey="0cc98beaec499a27fb30d94316780ac61ec41e8c6fce4f79fe0af63ba3783621",
        vkey="a72d295b528fd658862adb37a3b4b6f766fc3eeb5853c0e9ec0e91eb1acb5dea",
    ),
    24: _Pins(
        wasm="0ea5d513aaf0c340c5a2bbb1ed60ed6d5843ad162dabcab95dd35c9fb3960b1b",
        zkey="b02f7c575b5057adf85d2d15f2aa274fd3c964d4ec9f0184d032fec94513263a",
        vkey="46b02dcff801899b8df4ec8147fec21fd1750e6adf83a7216d01c49736f395ef",
    ),
    25: _Pins(
        wasm="2f1b63ecd98acf5b621144e7dceac3c1aaa0f71b58b0d7ac9dd51c9cb6e18143",
        zkey="61e799d74d3d2628dbf12ed8d50b46b050baf5130b88da36e3b516c7b8b6ce85",
        vkey="a5302280602149f6c5ae9500478896b3cd049b03a787cdc9f0b1059ee328d28e",
    ),
    26: _Pins(
        wasm="29031da511ac66be34f4d215eb836d45961e6ada73676056d60342c78bfe7224",
        zkey="8c358355090cd238acdd0b519004d84012f8b98a3c017c1926d93be9a0e8d401",
        vkey="e3bfb30321d861fa67125150e7cf2fb8a6ef9cfe79a7af428b41e84d626b498d",
    ),
    27: _Pins(
        wasm="6801d5e339e29ff88e886970c162dc75fd59edb5b22b970dafd9f8d7cc680954",
        zkey="acac2a49f009661188f5374cc8e499ec717b3316e8dc8cce07fe6e0a1c076d37",
        vkey="a5b439addb1e7a746f715ca02c5cad67f19b508c02fd0d44adc11c57bc03ca1f",
    ),
    28: _Pins(
        wasm="d32b206277f6c4b64d73a7b0fa9317b3659b25cccb82ad54529f0049d5cb9622",
        zkey="639dce9a7cb1ad94eeb367ae8cbe72f3a2108198a3458917b266a352885e89ad",
        vkey="1f8c7462b8acc8ede4b55f4970c41acf7a3e9c06c93b5cea13536a22a60a7690",
    ),
    29: _Pins(
        wasm="43b7015494de8af35e3f8f566fbdc2e21d6900d75fb9c63aa298f8629e466d91",
        zkey="9d29520b970b9e36df899a83d6ae22411db1c7478ace4ae73a0b7273eb19c11f",
        vkey="d222f4b247e108958876ec2f46d8a457e77c0858da6b59712213bb15a2b168dc",
    ),
    30: _Pins(
        wasm="f9f7ebeef01bd01dc5fc598afd51e7eea24657f75221a0ab0998d7773820d707",
        zkey="a4668a81cd85fdbd160befafe9e764ad846704c9b32ba875c1e29da87df4e4b8",
        vkey="6805799ba83735dbda9f5c6b251aee0c562a039398056a371c83ec26c6b9dfcc",
    ),
    31: _Pins(
        wasm="8d26ceed0ee85cd427685a302a9346104a32dd7543cc354b77f8c19f5e9a670d",
        zkey="c36a97eff543ff8df8079f84f9ef38ae078d691aaf1295545b66edc47309ecac",
        vkey="27b0b0d895cf4a4a049cf8d0ededec0d61b4f2631840d9f9a37400bb9e2fbf88",
    ),
    32: _Pins(
        wasm="528333d1247f585d33c5a40f46053fb7f8b1f5b8b8fa29118abfc47a60921dc5",
        zkey="2e5f7a9f880c337134ee4c7fc4e53573813b4c9c6ae46221c0b56e7992304650",
        vkey="3c0fd8c30c15df4db6970c0dfac35a3ac8d566ed5924072c9852ee566d4a90ae",
    ),
}


def check_depth(depth: int) -> int:
    """Return ``depth`` if it is an ``int`` in ``MIN_DEPTH..MAX_DEPTH``; raise ``ValueError`` otherwise."""
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise ValueError(f"tree depth must be an integer, got {type(depth).__name__}")
    if not MIN_DEPTH <= depth <= MAX_DEPTH:
        raise ValueError(f"tree depth must be between {MIN_DEPTH} and {MAX_DEPTH}, got {depth}")
    return depth


def artifacts_dir(directory: str | os.PathLike[str] | None = None) -> Path:
    """The artifacts directory: ``directory`` if given, else ``$ZKID_ARTIFACTS_DIR``, else
    ``<repo>/node_modules/@zk-kit/semaphore-artifacts`` next to this package."""
    if directory is not None:
        return Path(directory)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "node_modules" / "@zk-kit" / "semaphore-artifacts"


def _read_checked(path: Path, expected: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(
            f"Semaphore ceremony artifact {path} not found: run `make setup` (or `npm ci`) "
            f"to install {PACKAGE}@{VERSION}, or point ${ENV_VAR} at a directory holding it"
        ) from None
    except OSError as exc:
        raise ArtifactError(f"cannot read Semaphore ceremony artifact {path}: {exc}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ArtifactError(
            f"Semaphore ceremony artifact {path} has SHA-256 {actual}, expected {expected} "
            f"({PACKAGE}@{VERSION}): the file is corrupt or not the official one; "
            "reinstall it with `npm ci`"
        )
    return data


@dataclass(frozen=True)
class Artifacts:
    """Paths and pinned SHA-256 digests of the three artifacts of one depth."""

    depth: int
    wasm: Path
    zkey: Path
    vkey: Path
    pins: _Pins

    def path(self, kind: Kind) -> Path:
        return {"wasm": self.wasm, "zkey": self.zkey, "vkey": self.vkey}[kind]

    def read(self, kind: Kind) -> bytes:
        """Read one artifact and check its SHA-256 on the bytes returned."""
        return _read_checked(self.path(kind), getattr(self.pins, kind))


_cache: dict[tuple[Path, int], Artifacts] = {}
_lock = threading.Lock()


def load_artifacts(depth: int, directory: str | os.PathLike[str] | None = None) -> Artifacts:
    """Locate the artifacts of ``depth`` and check all three files against their pins.

    The check runs once per (directory, depth) per process. Raises ``ValueError`` for a
    depth outside 1..32 and :class:`ArtifactError` for a missing or altered file.
    """
    check_depth(depth)
    base = artifacts_dir(directory).resolve()
    key = (base, depth)
    with _lock:
        found = _cache.get(key)
    if found is not None:
        return found
    pins = PINNED_SHA256[depth]
    paths = {kind: base / f"semaphore-{depth}{suffix}" for kind, suffix in _SUFFIX.items()}
    for kind, path in paths.items():
        _read_checked(path, getattr(pins, kind))
    found = Artifacts(depth, paths["wasm"], paths["zkey"], paths["vkey"], pins)
    with _lock:
        _cache[key] = found
    return found
