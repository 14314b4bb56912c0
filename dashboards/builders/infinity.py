"""The Infinity datasource's query, as a type of the Grafana Foundation SDK.

The SDK ships query types for Grafana's core datasources only; a plugin's query is
added the way its README describes ("Defining a custom query type"): a
``cog.variants.Dataquery`` with ``to_json``/``from_json``, a builder, and a variant
config registered with the cog runtime so that ``Dashboard.from_json`` decodes the
query into this type instead of an untyped ``UnknownDataquery``.

Only the part of Infinity's query model the dashboards use is typed here: JSON
fetched from a URL with the backend parser (so alerting can use it too), typed
columns under a root selector, and computed columns. Field names are Infinity's
own (``url_options``, ``root_selector``, ``computed_columns``).
"""

from typing import Any, Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.common import DataSourceRef

PLUGIN_ID = "yesoreyeram-infinity-datasource"

ColumnType = Literal["string", "number", "timestamp"]


class Column:
    """A field of each row: ``selector`` is a dotted path in the row, ``text`` its name."""

    def __init__(self, selector: str, text: str, type_val: ColumnType) -> None:
        self.selector = selector
        self.text = text
        self.type_val = type_val

    def to_json(self) -> dict[str, object]:
        return {"selector": self.selector, "text": self.text, "type": self.type_val}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(data["selector"], data["text"], data["type"])


class KeyValue:
    """A query parameter or header; values may hold Grafana's ``${...}`` macros."""

    def __init__(self, key: str, value: str) -> None:
        self.key = key
        self.value = value

    def to_json(self) -> dict[str, object]:
        return {"key": self.key, "value": self.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(data["key"], data["value"])


class URLOptions:
    def __init__(
        self,
        method: Literal["GET", "POST"] = "GET",
        data: str = "",
        params: list[KeyValue] | None = None,
        headers: list[KeyValue] | None = None,
    ) -> None:
        self.method = method
        self.data = data
        self.params = params if params is not None else []
        self.headers = headers if headers is not None else []

    def to_json(self) -> dict[str, object]:
        return {
            "method": self.method,
            "data": self.data,
            "params": self.params,
            "headers": self.headers,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(
            method=data.get("method", "GET"),
            data=data.get("data", ""),
            params=[KeyValue.from_json(p) for p in data.get("params", [])],
            headers=[KeyValue.from_json(h) for h in data.get("headers", [])],
        )


class Query(cogvariants.Dataquery):
    """An Infinity query (one ``targets`` entry of a panel)."""

    def __init__(
        self,
        ref_id: str | None = None,
        hide: bool | None = None,
        datasource: DataSourceRef | None = None,
        type_val: Literal["json"] = "json",
        source: Literal["url"] = "url",
        parser: Literal["backend"] = "backend",
        format_val: Literal["table"] = "table",
        url: str = "",
        url_options: URLOptions | None = None,
        root_selector: str = "",
        columns: list[Column] | None = None,
        filters: list[object] | None = None,
        computed_columns: list[Column] | None = None,
    ) -> None:
        self.ref_id = ref_id
        self.hide = hide
        self.datasource = datasource
        self.type_val = type_val
        self.source = source
        self.parser = parser
        self.format_val = format_val
        self.url = url
        self.url_options = url_options if url_options is not None else URLOptions()
        self.root_selector = root_selector
        self.columns = columns if columns is not None else []
        self.filters = filters if filters is not None else []
        self.computed_columns = computed_columns

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {}
        if self.ref_id is not None:
            payload["refId"] = self.ref_id
        if self.hide is not None:
            payload["hide"] = self.hide
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        payload |= {
            "type": self.type_val,
            "source": self.source,
            "parser": self.parser,
            "format": self.format_val,
            "url": self.url,
            "url_options": self.url_options,
            "root_selector": self.root_selector,
            "columns": self.columns,
            "filters": self.filters,
        }
        if self.computed_columns is not None:
            payload["computed_columns"] = self.computed_columns
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        computed = data.get("computed_columns")
        return cls(
            ref_id=data.get("refId"),
            hide=data.get("hide"),
            datasource=DataSourceRef.from_json(data["datasource"])
            if "datasource" in data
            else None,
            type_val=data["type"],
            source=data["source"],
            parser=data["parser"],
            format_val=data["format"],
            url=data["url"],
            url_options=URLOptions.from_json(data.get("url_options", {})),
            root_selector=data.get("root_selector", ""),
            columns=[Column.from_json(c) for c in data.get("columns", [])],
            filters=data.get("filters", []),
            computed_columns=None if computed is None else [Column.from_json(c) for c in computed],
        )


def variant_config() -> cogruntime.DataqueryConfig:
    return cogruntime.DataqueryConfig(identifier=PLUGIN_ID, from_json_hook=Query.from_json)


def register() -> None:
    """Lets ``Dashboard.from_json`` decode Infinity targets as ``Query``."""
    cogruntime.register_dataquery_variant(variant_config())


class QueryBuilder(cogbuilder.Builder[Query]):
    """GET ``url`` (a path, appended to the datasource's URL) and read typed columns."""

    def __init__(self, url: str) -> None:
        self._internal = Query(url=url)

    def build(self) -> Query:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def datasource(self, datasource: DataSourceRef) -> Self:
        self._internal.datasource = datasource
        return self

    def param(self, key: str, value: str) -> Self:
        self._internal.url_options.params.append(KeyValue(key, value))
        return self

    def root_selector(self, root_selector: str) -> Self:
        self._internal.root_selector = root_selector
        return self

    def column(self, selector: str, type_val: ColumnType, text: str | None = None) -> Self:
        self._internal.columns.append(Column(selector, text or selector, type_val))
        return self

    def computed_column(self, expression: str, type_val: ColumnType, text: str) -> Self:
        """A column computed by Infinity from the others (referred to by their texts)."""
        if self._internal.computed_columns is None:
            self._internal.computed_columns = []
        self._internal.computed_columns.append(Column(expression, text, type_val))
        return self
