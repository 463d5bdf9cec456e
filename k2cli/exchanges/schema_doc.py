"""Exchange names frozen into the v2 trade schema's text (k2cli.trade imports this; it must not import the registry).

The Avro schema registered for every topic and the Iceberg table carry each field's doc line, so this text is
part of the schema: changing it, or deriving it from the registry, would register a new schema version when an
exchange is added. It names examples only; any registered exchange's code is valid.
"""

from __future__ import annotations

EXCHANGE_FIELD_DOC = "Exchange code, e.g. BINANCE, KRAKEN"
