import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Level(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEVEL_UNSPECIFIED: _ClassVar[Level]
    LEVEL_VIRTUAL_KEY: _ClassVar[Level]
    LEVEL_TEAM: _ClassVar[Level]
    LEVEL_CUSTOMER: _ClassVar[Level]
    LEVEL_ORG: _ClassVar[Level]

class Period(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PERIOD_UNSPECIFIED: _ClassVar[Period]
    PERIOD_DAY: _ClassVar[Period]
    PERIOD_WEEK: _ClassVar[Period]
    PERIOD_MONTH: _ClassVar[Period]
    PERIOD_TOTAL: _ClassVar[Period]

class BudgetSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUDGET_SOURCE_UNSPECIFIED: _ClassVar[BudgetSource]
    BUDGET_SOURCE_ADMIN: _ClassVar[BudgetSource]
    BUDGET_SOURCE_CONFIG: _ClassVar[BudgetSource]
    BUDGET_SOURCE_CONFIG_DEFAULT: _ClassVar[BudgetSource]

class KeySource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_SOURCE_UNSPECIFIED: _ClassVar[KeySource]
    KEY_SOURCE_ADMIN: _ClassVar[KeySource]
    KEY_SOURCE_CONFIG: _ClassVar[KeySource]

class KeyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_STATE_UNSPECIFIED: _ClassVar[KeyState]
    KEY_STATE_ACTIVE: _ClassVar[KeyState]
    KEY_STATE_REVOKED: _ClassVar[KeyState]

class Dimension(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIMENSION_UNSPECIFIED: _ClassVar[Dimension]
    DIMENSION_VIRTUAL_KEY: _ClassVar[Dimension]
    DIMENSION_TEAM: _ClassVar[Dimension]
    DIMENSION_CUSTOMER: _ClassVar[Dimension]
    DIMENSION_ORG: _ClassVar[Dimension]
    DIMENSION_TIER: _ClassVar[Dimension]
    DIMENSION_MODEL: _ClassVar[Dimension]
    DIMENSION_PROVIDER: _ClassVar[Dimension]
LEVEL_UNSPECIFIED: Level
LEVEL_VIRTUAL_KEY: Level
LEVEL_TEAM: Level
LEVEL_CUSTOMER: Level
LEVEL_ORG: Level
PERIOD_UNSPECIFIED: Period
PERIOD_DAY: Period
PERIOD_WEEK: Period
PERIOD_MONTH: Period
PERIOD_TOTAL: Period
BUDGET_SOURCE_UNSPECIFIED: BudgetSource
BUDGET_SOURCE_ADMIN: BudgetSource
BUDGET_SOURCE_CONFIG: BudgetSource
BUDGET_SOURCE_CONFIG_DEFAULT: BudgetSource
KEY_SOURCE_UNSPECIFIED: KeySource
KEY_SOURCE_ADMIN: KeySource
KEY_SOURCE_CONFIG: KeySource
KEY_STATE_UNSPECIFIED: KeyState
KEY_STATE_ACTIVE: KeyState
KEY_STATE_REVOKED: KeyState
DIMENSION_UNSPECIFIED: Dimension
DIMENSION_VIRTUAL_KEY: Dimension
DIMENSION_TEAM: Dimension
DIMENSION_CUSTOMER: Dimension
DIMENSION_ORG: Dimension
DIMENSION_TIER: Dimension
DIMENSION_MODEL: Dimension
DIMENSION_PROVIDER: Dimension

class Budget(_message.Message):
    __slots__ = ("level", "id", "period", "limit_usd", "source", "name", "updated_at")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_USD_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    level: Level
    id: str
    period: Period
    limit_usd: str
    source: BudgetSource
    name: str
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, level: _Optional[_Union[Level, str]] = ..., id: _Optional[str] = ..., period: _Optional[_Union[Period, str]] = ..., limit_usd: _Optional[str] = ..., source: _Optional[_Union[BudgetSource, str]] = ..., name: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetBudgetRequest(_message.Message):
    __slots__ = ("level", "id", "period", "limit_usd")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_USD_FIELD_NUMBER: _ClassVar[int]
    level: Level
    id: str
    period: Period
    limit_usd: str
    def __init__(self, level: _Optional[_Union[Level, str]] = ..., id: _Optional[str] = ..., period: _Optional[_Union[Period, str]] = ..., limit_usd: _Optional[str] = ...) -> None: ...

class GetBudgetRequest(_message.Message):
    __slots__ = ("level", "id", "period")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    level: Level
    id: str
    period: Period
    def __init__(self, level: _Optional[_Union[Level, str]] = ..., id: _Optional[str] = ..., period: _Optional[_Union[Period, str]] = ...) -> None: ...

class ListBudgetsRequest(_message.Message):
    __slots__ = ("level", "id")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    level: Level
    id: str
    def __init__(self, level: _Optional[_Union[Level, str]] = ..., id: _Optional[str] = ...) -> None: ...

class ListBudgetsResponse(_message.Message):
    __slots__ = ("budgets",)
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    budgets: _containers.RepeatedCompositeFieldContainer[Budget]
    def __init__(self, budgets: _Optional[_Iterable[_Union[Budget, _Mapping]]] = ...) -> None: ...

class DeleteBudgetRequest(_message.Message):
    __slots__ = ("level", "id", "period")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    level: Level
    id: str
    period: Period
    def __init__(self, level: _Optional[_Union[Level, str]] = ..., id: _Optional[str] = ..., period: _Optional[_Union[Period, str]] = ...) -> None: ...

class DeleteBudgetResponse(_message.Message):
    __slots__ = ("in_effect",)
    IN_EFFECT_FIELD_NUMBER: _ClassVar[int]
    in_effect: Budget
    def __init__(self, in_effect: _Optional[_Union[Budget, _Mapping]] = ...) -> None: ...

class VirtualKey(_message.Message):
    __slots__ = ("id", "team", "org", "customers", "tiers", "models", "tier_override", "source", "state", "created_at", "revoked_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    TIER_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    team: str
    org: str
    customers: _containers.RepeatedScalarFieldContainer[str]
    tiers: _containers.RepeatedScalarFieldContainer[str]
    models: _containers.RepeatedScalarFieldContainer[str]
    tier_override: bool
    source: KeySource
    state: KeyState
    created_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., team: _Optional[str] = ..., org: _Optional[str] = ..., customers: _Optional[_Iterable[str]] = ..., tiers: _Optional[_Iterable[str]] = ..., models: _Optional[_Iterable[str]] = ..., tier_override: _Optional[bool] = ..., source: _Optional[_Union[KeySource, str]] = ..., state: _Optional[_Union[KeyState, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateKeyRequest(_message.Message):
    __slots__ = ("id", "team", "org", "customers", "tiers", "models", "tier_override")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    TIER_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    id: str
    team: str
    org: str
    customers: _containers.RepeatedScalarFieldContainer[str]
    tiers: _containers.RepeatedScalarFieldContainer[str]
    models: _containers.RepeatedScalarFieldContainer[str]
    tier_override: bool
    def __init__(self, id: _Optional[str] = ..., team: _Optional[str] = ..., org: _Optional[str] = ..., customers: _Optional[_Iterable[str]] = ..., tiers: _Optional[_Iterable[str]] = ..., models: _Optional[_Iterable[str]] = ..., tier_override: _Optional[bool] = ...) -> None: ...

class CreateKeyResponse(_message.Message):
    __slots__ = ("key", "secret")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    key: VirtualKey
    secret: str
    def __init__(self, key: _Optional[_Union[VirtualKey, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ("include_revoked", "team", "org")
    INCLUDE_REVOKED_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    include_revoked: bool
    team: str
    org: str
    def __init__(self, include_revoked: _Optional[bool] = ..., team: _Optional[str] = ..., org: _Optional[str] = ...) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[VirtualKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[VirtualKey, _Mapping]]] = ...) -> None: ...

class RevokeKeyRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RotateKeyRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class SpendFilter(_message.Message):
    __slots__ = ("dimension", "value")
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    dimension: Dimension
    value: str
    def __init__(self, dimension: _Optional[_Union[Dimension, str]] = ..., value: _Optional[str] = ...) -> None: ...

class SpendReportRequest(_message.Message):
    __slots__ = ("start", "end", "filters", "group_by", "reference_model")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_MODEL_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    filters: _containers.RepeatedCompositeFieldContainer[SpendFilter]
    group_by: _containers.RepeatedScalarFieldContainer[Dimension]
    reference_model: str
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., filters: _Optional[_Iterable[_Union[SpendFilter, _Mapping]]] = ..., group_by: _Optional[_Iterable[_Union[Dimension, str]]] = ..., reference_model: _Optional[str] = ...) -> None: ...

class TokenTotals(_message.Message):
    __slots__ = ("input", "output", "cache_read", "cache_write", "reasoning")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    CACHE_READ_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    input: int
    output: int
    cache_read: int
    cache_write: int
    reasoning: int
    def __init__(self, input: _Optional[int] = ..., output: _Optional[int] = ..., cache_read: _Optional[int] = ..., cache_write: _Optional[int] = ..., reasoning: _Optional[int] = ...) -> None: ...

class SpendRow(_message.Message):
    __slots__ = ("group", "requests", "tokens", "cost_usd", "reference_cost_usd")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_COST_USD_FIELD_NUMBER: _ClassVar[int]
    group: _containers.RepeatedScalarFieldContainer[str]
    requests: int
    tokens: TokenTotals
    cost_usd: str
    reference_cost_usd: str
    def __init__(self, group: _Optional[_Iterable[str]] = ..., requests: _Optional[int] = ..., tokens: _Optional[_Union[TokenTotals, _Mapping]] = ..., cost_usd: _Optional[str] = ..., reference_cost_usd: _Optional[str] = ...) -> None: ...

class SpendReportResponse(_message.Message):
    __slots__ = ("start", "end", "group_by", "rows", "total", "reference_model")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_MODEL_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    group_by: _containers.RepeatedScalarFieldContainer[Dimension]
    rows: _containers.RepeatedCompositeFieldContainer[SpendRow]
    total: SpendRow
    reference_model: str
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., group_by: _Optional[_Iterable[_Union[Dimension, str]]] = ..., rows: _Optional[_Iterable[_Union[SpendRow, _Mapping]]] = ..., total: _Optional[_Union[SpendRow, _Mapping]] = ..., reference_model: _Optional[str] = ...) -> None: ...

class GetSpendRecordRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class SpendRecord(_message.Message):
    __slots__ = ("request_id", "time", "key_id", "team", "customer", "org", "tier", "provider", "upstream", "model", "tokens", "cost_usd", "usage_source", "status", "outcome", "latency_ms", "flags", "provider_cost_usd")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    USAGE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_COST_USD_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    time: _timestamp_pb2.Timestamp
    key_id: str
    team: str
    customer: str
    org: str
    tier: str
    provider: str
    upstream: str
    model: str
    tokens: TokenTotals
    cost_usd: str
    usage_source: str
    status: int
    outcome: str
    latency_ms: int
    flags: _containers.RepeatedScalarFieldContainer[str]
    provider_cost_usd: str
    def __init__(self, request_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key_id: _Optional[str] = ..., team: _Optional[str] = ..., customer: _Optional[str] = ..., org: _Optional[str] = ..., tier: _Optional[str] = ..., provider: _Optional[str] = ..., upstream: _Optional[str] = ..., model: _Optional[str] = ..., tokens: _Optional[_Union[TokenTotals, _Mapping]] = ..., cost_usd: _Optional[str] = ..., usage_source: _Optional[str] = ..., status: _Optional[int] = ..., outcome: _Optional[str] = ..., latency_ms: _Optional[int] = ..., flags: _Optional[_Iterable[str]] = ..., provider_cost_usd: _Optional[str] = ...) -> None: ...
