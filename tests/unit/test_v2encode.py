"""The fast v2 Avro encoder writes exactly the bytes fastavro writes, and decodes back to the same record."""

import io
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import fastavro

from k2cli import trade
from k2cli.kafka.v2encode import SUPPORTED, encode_v2, fastavro_encoder, make_encoder

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _records(n, seed=7, max_ts=2**62):
    rng = random.Random(seed)
    for i in range(n):
        price = Decimal(rng.randint(1, 10**18 - 1)).scaleb(-rng.randint(0, 8))
        if price >= trade.DECIMAL_LIMIT:
            price = Decimal("9999999999.99999999")
        yield trade.new_trade(
            trade_id=f"X-{i}" * rng.randint(1, 30), symbol=rng.choice(["BTCUSDT", "ÉTHEUR", "A" * 70]),
            exchange=rng.choice(["BINANCE", "KRAKEN"]), timestamp_us=rng.randint(1, max_ts),
            price=price, quantity=Decimal(rng.randint(1, 10**9)).scaleb(-8), currency="USDT",
            side=rng.choice(trade.SIDES), ingestion_timestamp_us=rng.randint(1, 2**40),
            source_sequence=rng.choice([None, 0, 63, 64, -1, -65, 2**63 - 1, -(2**63), rng.randint(0, 10**12)]),
            platform_sequence=rng.choice([None, rng.randint(-(2**40), 2**40)]),
            vendor_data=rng.choice([None, {}, {"pair": "XBT/USD", "k" * rng.randint(1, 200): "v" * rng.randint(0, 9)}]),
            trade_conditions=rng.choice([[], ["a"], ["x" * 100, "y"]]),
            asset_class=rng.choice(trade.ASSET_CLASSES),
        )


def test_fast_encoder_is_byte_identical_to_fastavro():
    assert SUPPORTED and make_encoder() is encode_v2
    reference = fastavro_encoder()
    for rec in _records(3000):
        assert encode_v2(rec) == reference(rec), rec


def test_fast_encoding_round_trips_through_fastavro_reader():
    parsed = fastavro.parse_schema(trade.avro_schema())
    for rec in _records(300, seed=11, max_ts=4 * 10**15):
        back = fastavro.schemaless_reader(io.BytesIO(encode_v2(rec)), parsed, parsed)
        assert back["price"] == rec["price"] and back["quantity"] == rec["quantity"]
        assert (back["timestamp"] - EPOCH) // timedelta(microseconds=1) == rec["timestamp"]
        assert back["vendor_data"] == rec["vendor_data"] and back["source_sequence"] == rec["source_sequence"]


def test_long_varint_edges_match_the_reference():
    from k2cli.kafka.v2encode import _long

    def reference(n):
        z = (n << 1) ^ (n >> 63)
        out = bytearray()
        while z >= 0x80:
            out.append((z & 0x7F) | 0x80)
            z >>= 7
        out.append(z)
        return bytes(out)

    edges = [0, 1, -1, 63, 64, -64, -65, 8191, 8192, -8193, 2**20, 2**27, 2**28, 1_795_457_511_949_123,
             2**48, 2**49, 2**55, 2**62, 2**63 - 1, -(2**63)]
    for base in edges:
        for n in (base - 1, base, base + 1):
            if -(2**63) <= n < 2**63:
                assert _long(n) == reference(n), n


def test_rows_from_the_parsers_encode_exactly_like_their_records():
    import time

    from k2cli.exchanges.base import row_to_record
    from k2cli.exchanges.binance import BinanceParser
    from k2cli.exchanges.kraken import KrakenV1Parser, KrakenV2Parser
    from k2cli.kafka.v2encode import encode_row, make_row_encoder
    from k2cli.simulator.tape import GeneratedTape
    from k2cli.simulator.venues import binance, kraken

    assert make_row_encoder() is encode_row
    reference = fastavro_encoder()
    cases = [(binance.VENUE, binance.COMBINED, BinanceParser(), ("BTCUSDT", "ETHBTC")),
             (kraken.VENUE, kraken.V1, KrakenV1Parser(), ("BTC/USD", "DOGE/EUR")),
             (kraken.VENUE, kraken.V2, KrakenV2Parser(), ("BTC/USD", "ETH/USD"))]
    for venue, dialect, parser, symbols in cases:
        tape = GeneratedTape(symbols, seed=3, multi=venue.multi_trade_events)
        for _ in range(300):
            frame = tape.next_event(time.time_ns() // 1000).text(dialect)
            for row in parser.parse_rows(frame, 1_700_000_000_000_000).trades:
                record = trade.validate_trade(row_to_record(row))
                assert encode_row(row) == encode_v2(record) == reference(record)


def test_row_encoder_writes_the_header_first_and_decimals_like_scaleb():
    import time

    from k2cli.exchanges.binance import BinanceParser
    from k2cli.kafka.v2encode import _decimal, encode_row
    from k2cli.simulator.tape import GeneratedTape
    from k2cli.simulator.venues.binance import COMBINED

    tape, parser = GeneratedTape(("BTCUSDT",), seed=5), BinanceParser()
    header = b"\x00\x00\x00\x00\x07"
    for _ in range(50):
        row = parser.parse_rows(tape.next_event(time.time_ns() // 1000).text(COMBINED), 1).trades[0]
        assert encode_row(row, header) == header + encode_row(row)
    for text in ("0.00000001", "1", "1.10000000", "9999999999.99999999", "1.0000000000", "123.4567890000",
                 "-5.5", "0", "1E+3", "2.5E-7", "12345678901234567.8"):
        d = Decimal(text)
        v = int(d.scaleb(8))
        assert _decimal(d) == bytes((len(raw := v.to_bytes((v.bit_length() + 8) // 8, "big", signed=True)) << 1,)) + raw


def test_fallback_row_encoder_takes_a_header_too(monkeypatch):
    from k2cli.exchanges.base import row_to_record
    from k2cli.exchanges.kraken import KrakenV2Parser
    from k2cli.kafka import v2encode

    monkeypatch.setattr(v2encode, "SUPPORTED", False)
    slow = v2encode.make_row_encoder()
    raw = ('{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":50000.1,'
           '"qty":0.0001,"ord_type":"limit","trade_id":7,"timestamp":"2024-01-01T00:00:00.000001Z"}]}')
    row = KrakenV2Parser().parse_rows(raw, 1).trades[0]
    assert slow(row, b"HDR") == b"HDR" + fastavro_encoder()(trade.validate_trade(row_to_record(row)))
    assert slow(row) == v2encode.encode_row(row)
