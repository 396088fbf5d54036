"""Wire models of the registry's HTTP API: the request and answer shapes, the exact
patterns of field elements, and the conversions of answers to JSON.

Field elements are canonical decimal strings (``zk.field.parse_decimal``: no sign, no
spaces, no leading zeros, below the modulus; never reduced); the OpenAPI document gives
each such field a regular expression matching exactly the canonical decimals of its range
(docs/api.md "Conventions").
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictStr, WithJsonSchema

from registry.errors import RegistryError
from registry._utils.integers import MAX_GROUP_ID, json_integer  # the bounds: registry/_utils/integers.py
from registry._utils.integers import UINT64_MAX as UINT64_MAX  # re-exported (registry/web/app.py)
from zk.field import Q, R, FieldError, parse_decimal

def decimal_pattern(bound: int, *, zero: bool = True) -> str:
    """A regular expression matching exactly the canonical decimals of the integers in
    ``[0, bound)`` (``[1, bound)`` without ``zero``), so that the OpenAPI document states
    the field ranges exactly and schema-valid input is never refused for its range.

    Shorter numbers are all below the bound; a number with as many digits as the bound
    is below it iff it shares a prefix with it and then has a smaller digit.
    """
    digits = str(bound)
    n = len(digits)
    branches = ["0"] if zero else []
    if n > 1:
        branches.append("[1-9]" if n == 2 else f"[1-9][0-9]{{0,{n - 2}}}")
    for i, d in enumerate(digits):
        low = 1 if i == 0 else 0
        high = int(d) - 1
        if high < low:
            continue
        rest = n - 1 - i
        branch = digits[:i] + (str(low) if low == high else f"[{low}-{high}]")
        if rest:
            branch += "[0-9]" if rest == 1 else f"[0-9]{{{rest}}}"
        branches.append(branch)
    return "^(?:" + "|".join(branches) + ")$"


#: Canonical decimals: below r (field elements), in (0, r) (commitments), below q (curve
#: coordinates), below 2**256 (a proof's message and scope).
FIELD = decimal_pattern(R)
COMMITMENT = decimal_pattern(R, zero=False)
BASE_FIELD = decimal_pattern(Q)
UINT256 = decimal_pattern(2**256)
HEX32 = r"^(0x)?[0-9a-fA-F]{64}$"
MAX_COMMITMENTS_PER_REQUEST = 1000
#: Body limit of a registration: 1000 commitments of up to 77 digits are ~80 KB of
#: compact JSON; this leaves room for pretty-printing and stays bounded.
MEMBERS_MAX_BODY = 128 * 1024


def _json_integer(value: Any) -> Any:
    """JSON integers as JSON Schema defines them (``5`` and ``5.0``), never strings or
    booleans (pydantic's lax mode would take ``"5"``, its strict mode refuses ``5.0``):
    ``registry.service.authorization.json_integer``, the rule a relay checking locally applies."""
    number = json_integer(value)
    if number is None:
        raise ValueError("must be a JSON integer")
    return number


JsonInt = Annotated[int, BeforeValidator(_json_integer)]
# Stated explicitly: in an optional field pydantic would write its bounds as "ge"/"le",
# which JSON Schema does not know.
RootWindow = Annotated[
    int,
    BeforeValidator(_json_integer),
    Field(ge=0, le=UINT64_MAX),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": UINT64_MAX}),
]

_CANONICAL = "canonical decimal string (ASCII digits, no sign, spaces or leading zeros)"
FieldElement = Annotated[StrictStr, Field(pattern=FIELD, description=f"Element of the BN254 scalar field: {_CANONICAL}, below r.")]
Commitment = Annotated[StrictStr, Field(pattern=COMMITMENT, description=f"Identity commitment: {_CANONICAL}, 0 < c < r.")]
Coordinate = Annotated[StrictStr, Field(pattern=BASE_FIELD, description=f"Curve coordinate: {_CANONICAL}, below q.")]
Uint256 = Annotated[StrictStr, Field(pattern=UINT256, description=f"{_CANONICAL}, below 2^256.")]


GroupId = Annotated[int, Path(ge=0, le=MAX_GROUP_ID, description="Group id.")]
CommitmentPath = Annotated[str, Path(pattern=COMMITMENT, description=f"Identity commitment: {_CANONICAL}, 0 < c < r.")]
RootPath = Annotated[str, Path(pattern=FIELD, description=f"Merkle root: {_CANONICAL}, below r.")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Strict):
    code: str = Field(description="Machine-readable error code (docs/api.md).")
    message: str


class ErrorResponse(_Strict):
    error: ErrorDetail


Uint64 = Annotated[
    int,
    BeforeValidator(_json_integer),
    Field(ge=0, le=UINT64_MAX),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": UINT64_MAX}),
]
OptionalGroupId = Annotated[
    int,
    BeforeValidator(_json_integer),
    Field(ge=0, le=MAX_GROUP_ID),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_GROUP_ID}),
]


class AdmissionModel(_Strict):
    """A group's admission policy (docs/admission.md)."""

    policy: Literal["zk", "invite", "open", "closed"] = Field(
        "zk", description="`zk` (anonymous admission proof), `invite`, `open` (anyone) or `closed` (operator only)."
    )
    admission_group: OptionalGroupId | None = Field(None, description="Policy `zk`: the group of checked persons.")
    round: Uint64 = Field(0, description="Policy `zk`: the admission round (one registration per credential per round).")
    send: StrictBool | None = Field(None, description="A send group (sends authorized); default: true, false for `closed`.")


class CreateGroupRequest(_Strict):
    root_window: RootWindow | None = Field(
        None, description="Seconds a superseded root stays valid (default: the deployment's)."
    )
    admission: AdmissionModel | None = Field(
        None,
        description="Admission policy (default: `zk` with the registry's configured admission group; none configured: the group is not served until one is set).",
    )


class InvitesRequest(_Strict):
    count: JsonInt = Field(ge=1, le=1000, description="Number of single-use invite codes.")
    expires_at: JsonInt = Field(ge=1, le=UINT64_MAX, description="Unix time (seconds) after which they are refused.")


class InvitesResponse(BaseModel):
    group_id: int
    invites: list[str]
    expires_at: int


class SemaphoreProofModel(_Strict):
    """The JS SDK's ``SemaphoreProof`` JSON (``@semaphore-protocol/proof`` v4)."""

    merkleTreeDepth: JsonInt = Field(ge=1, le=32)
    merkleTreeRoot: FieldElement
    nullifier: FieldElement
    message: Uint256
    scope: Uint256
    points: list[Coordinate] = Field(min_length=8, max_length=8, description="Packed Groth16 proof (8 coordinates).")


class RegisterRequest(_Strict):
    commitments: list[Commitment] = Field(
        min_length=1,
        max_length=MAX_COMMITMENTS_PER_REQUEST,
        description="Identity commitments: distinct field elements 0 < c < r.",
    )
    admission_proof: SemaphoreProofModel | None = Field(
        None, description="Policy `zk`: a proof of membership in the admission group (docs/admission.md)."
    )
    invite: Annotated[StrictStr, Field(min_length=1, max_length=128)] | None = Field(
        None, description="Policy `invite`: a single-use invite code."
    )


class MemberStatusModel(BaseModel):
    group_id: int
    commitment: str
    status: Literal["pending", "included", "final", "refused"]
    index: int | None = None
    tx_hash: str | None = None
    block_number: int | None = None
    confirmations: int = 0
    reason: str | None = Field(
        default=None, description="With status `refused`: why the ledger refused it for good (`forbidden`, `unknown_group`)."
    )


class RegisterResponse(BaseModel):
    members: list[MemberStatusModel]


class GroupModel(BaseModel):
    model_config = ConfigDict(extra="allow")
    group_id: int
    chain_id: int = Field(description="With registry_contract and group_id: the global group reference scopes name (docs/authorization.md).")
    registry_contract: str = Field(description="The ZkIdRegistry contract's address (lower-case hex).")
    root: str
    size: int
    depth: int
    root_window: int | None = None
    epoch_length: int
    message_limit: int
    clock_skew: int
    admission: AdmissionModel | None = Field(None, description="The group's admission policy; null: not served.")


class GroupsResponse(BaseModel):
    groups: list[GroupModel]


class MerkleProofModel(BaseModel):
    root: str
    leaf: str
    index: int
    siblings: list[str]


class MerkleProofResponse(BaseModel):
    group_id: int
    merkle_proof: MerkleProofModel


#: Most leaves one ``GET /v1/groups/{id}/members`` page holds (~80 bytes each).
MAX_MEMBERS_PAGE = 10_000


class MembersPageModel(BaseModel):
    group_id: int
    root: str = Field(description="The group's current root when the page was read.")
    size: int = Field(description="Number of leaves, removed ones included.")
    start: int
    members: list[str] = Field(description='Leaves start.. in tree order, decimal; "0" for a removed member.')


class RootInfoModel(BaseModel):
    model_config = ConfigDict(extra="allow")
    root: str
    group_id: int
    valid: bool
    current: bool


class AuthorizeRequest(_Strict):
    group_id: JsonInt = Field(ge=0, le=MAX_GROUP_ID)
    proof: SemaphoreProofModel
    blob_digest: StrictStr = Field(pattern=HEX32, description="SHA-256 of the encrypted blob, 64 hex digits.")


class DecisionModel(BaseModel):
    authorized: StrictBool
    reason: str = Field(description="`ok` or a refusal reason (docs/authorization.md).")
    nullifier: str | None = None
    epoch: int | None = None


class RefusalModel(DecisionModel):
    error: ErrorDetail


class HealthModel(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["ok", "degraded"]
    reasons: list[str] = Field(default_factory=list, description="Why degraded (machine-readable codes, docs/api.md).")
    region: str
    ledger: Literal["up", "down"]


def parse_field(text: str, name: str, code: str) -> int:
    try:
        return parse_decimal(text, name, R)
    except FieldError as exc:
        raise RegistryError(code, str(exc), 422) from None


def parse_commitment(text: str, name: str = "commitment") -> int:
    value = parse_field(text, name, "invalid_commitment")
    if value == 0:
        raise RegistryError("invalid_commitment", f"{name} must not be 0")
    return value


def jsonable(value: Any) -> Any:
    """Big integers (field elements) as decimal strings; small ones stay numbers."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return str(value) if abs(value) >= 2**53 else value
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


def group_dict(info: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = jsonable(info)
    data["root"] = str(info["root"])
    return data

