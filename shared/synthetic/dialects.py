"""Export dialects: the ways real till systems and spreadsheets write the same sales data.

The importer must cope with delimiters, encodings, date orders, decimal commas and vendor headers
it has never seen. Each dialect reproduces one family of exports so that demos and round-trip
tests cover them; the settings here are also what a reader needs to parse the file back exactly.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

FileFormat = Literal["csv", "xlsx", "parquet"]
Quoting = Literal[0, 1, 2, 3]  # the csv.QUOTE_* constants

# Sentinel date formats for the binary formats.
EXCEL_SERIAL = "excel-serial"  # whole days since 1899-12-30, no time of day
NATIVE = "native"  # a typed timestamp column


@dataclass(frozen=True)
class IdStyle:
    """How a system prints identifiers: a prefix and a zero-padded running number."""

    prefix: str
    width: int
    start: int = 1

    def render(self, number: int) -> str:
        return f"{self.prefix}{number + self.start:0{self.width}d}"


@dataclass(frozen=True)
class Dialect:
    """Everything needed to write, and read back, one family of sales exports."""

    name: str
    file_name: str
    file_format: FileFormat
    columns: Mapping[str, str]  # canonical field -> header, in file order
    delimiter: str = ","
    encoding: str = "utf-8"
    date_format: str = "%Y-%m-%d %H:%M:%S"  # strftime; "%-I" = hour 1-12 without padding
    decimal: str = "."
    thousands: str = ""
    true_text: str = "true"
    false_text: str = "false"
    quoting: Quoting = csv.QUOTE_MINIMAL
    line_terminator: str = "\n"
    extra_columns: Mapping[str, str] = field(default_factory=dict)  # header -> generator field
    label_style: str = "en_title"
    segment_labels: Mapping[str, str] = field(default_factory=dict)  # canonical -> own word
    product_ids: IdStyle = IdStyle("P", 4)
    transaction_ids: IdStyle = IdStyle("T", 7)
    customer_ids: IdStyle = IdStyle("C", 5)
    store_ids: IdStyle = IdStyle("S", 2)

    @property
    def extension(self) -> str:
        return self.file_name.rsplit(".", 1)[-1]

    @property
    def has_time(self) -> bool:
        """Whether timestamps keep the time of day (date-only exports lose basket timing)."""
        return self.date_format == NATIVE or any(
            token in self.date_format for token in ("%H", "%I", "%-I")
        )

    @property
    def parse_format(self) -> str:
        """The date format for strptime-style parsers, which accept unpadded numbers anyway."""
        return self.date_format.replace("%-", "%")

    def header(self, canonical: str) -> str | None:
        return self.columns.get(canonical)


STANDARD_CSV = Dialect(
    name="standard_csv",
    file_name="sales.csv",
    file_format="csv",
    columns={
        "transaction_id": "transaction_id",
        "timestamp": "timestamp",
        "retailer_id": "store_id",
        "customer_id": "customer_id",
        "customer_segment": "customer_segment",
        "product_id": "product_id",
        "category": "category",
        "quantity_sold": "quantity",
        "price": "price",
        "unit_cost": "unit_cost",
        "promotion_active": "promotion",
        "competitor_price": "competitor_price",
        "inventory_level": "inventory",
        "seasonal_factor": "seasonal_factor",
    },
    extra_columns={"product_name": "product_name"},
    label_style="en_title",
    segment_labels={"loyalty": "loyalty", "walk-in": "walk-in", "business": "business"},
    product_ids=IdStyle("P", 4),
    transaction_ids=IdStyle("T", 7),
    customer_ids=IdStyle("C", 5),
    store_ids=IdStyle("S", 2),
)

EU_SEMICOLON = Dialect(
    name="eu_semicolon",
    file_name="umsatz.csv",
    file_format="csv",
    columns={
        "timestamp": "Datum",
        "retailer_id": "Filiale",
        "transaction_id": "Bon-Nr",
        "customer_id": "Kunden-Nr",
        "customer_segment": "Kundengruppe",
        "product_id": "Artikelnummer",
        "category": "Warengruppe",
        "quantity_sold": "Menge",
        "price": "Preis",
        "promotion_active": "Aktion",
        "unit_cost": "Einkaufspreis",
        "competitor_price": "Wettbewerbspreis",
        "inventory_level": "Lagerbestand",
        "seasonal_factor": "Saisonfaktor",
    },
    delimiter=";",
    encoding="utf-8-sig",
    date_format="%d.%m.%Y %H:%M",
    decimal=",",
    thousands=".",
    true_text="ja",
    false_text="nein",
    line_terminator="\r\n",
    extra_columns={"Bezeichnung": "product_name"},
    label_style="de",
    segment_labels={
        "loyalty": "Stammkunde",
        "walk-in": "Laufkundschaft",
        "business": "Gewerbekunde",
    },
    product_ids=IdStyle("", 6, 100001),
    transaction_ids=IdStyle("", 6, 500001),
    customer_ids=IdStyle("K", 6, 1001),
    store_ids=IdStyle("Filiale ", 1),
)

US_POS_TSV = Dialect(
    name="us_pos_tsv",
    file_name="sales.tsv",
    file_format="csv",
    columns={
        "transaction_id": "Receipt #",
        "timestamp": "Sale Date",
        "retailer_id": "Store",
        "product_id": "SKU",
        "category": "Department",
        "quantity_sold": "Qty",
        "price": "Unit Price",
        "unit_cost": "Unit Cost",
        "promotion_active": "On Promo",
        "competitor_price": "Comp Price",
        "inventory_level": "Stock On Hand",
        "customer_id": "Customer #",
        "customer_segment": "Customer Type",
    },
    delimiter="\t",
    encoding="cp1252",
    date_format="%m/%d/%Y %-I:%M %p",
    thousands=",",
    true_text="Y",
    false_text="N",
    line_terminator="\r\n",
    extra_columns={"Description": "product_name"},
    label_style="en_upper",
    segment_labels={"loyalty": "Rewards", "walk-in": "Walk-in", "business": "Wholesale"},
    product_ids=IdStyle("0", 11, 4_000_000),  # 12-digit UPC-like codes with a leading zero
    transaction_ids=IdStyle("", 8, 20_000_001),
    customer_ids=IdStyle("", 8, 12_001),  # zero-padded card numbers
    store_ids=IdStyle("", 4, 101),
)

SPREADSHEET_XLSX = Dialect(
    name="spreadsheet_xlsx",
    file_name="sales.xlsx",
    file_format="xlsx",
    columns={
        "timestamp": "Date",
        "transaction_id": "Receipt No",
        "customer_id": "Customer",
        "product_id": "Item",
        "category": "Category",
        "price": "Price",
        "quantity_sold": "Units Sold",
        "promotion_active": "Promo",
        "inventory_level": "Stock",
    },
    date_format=EXCEL_SERIAL,
    true_text="Yes",
    false_text="No",
    label_style="en_lower",
    product_ids=IdStyle("A", 4),
    transaction_ids=IdStyle("", 1, 1),
    customer_ids=IdStyle("CUST-", 4),
)

PARQUET_EXPORT = Dialect(
    name="parquet_export",
    file_name="sales.parquet",
    file_format="parquet",
    columns={
        "transaction_id": "basket_id",
        "timestamp": "sold_at",
        "retailer_id": "store_id",
        "customer_id": "loyalty_id",
        "customer_segment": "segment",
        "product_id": "sku",
        "category": "category_name",
        "quantity_sold": "qty",
        "price": "unit_price",
        "unit_cost": "cost_price",
        "promotion_active": "promo_flag",
        "competitor_price": "competitor_unit_price",
        "inventory_level": "stock_level",
        "seasonal_factor": "season_index",
    },
    date_format=NATIVE,
    label_style="en_snake",
    segment_labels={"loyalty": "member", "walk-in": "guest", "business": "b2b"},
    product_ids=IdStyle("SKU-", 5),
    transaction_ids=IdStyle("B", 8),
    customer_ids=IdStyle("M", 6),
    store_ids=IdStyle("store_", 2),
)

PIPE_QUOTED_CSV = Dialect(
    name="pipe_quoted_csv",
    file_name="sales.txt",
    file_format="csv",
    columns={
        "transaction_id": "Ticket",
        "timestamp": "Transaction Date",
        "customer_id": "Client",
        "customer_segment": "Segment",
        "product_id": "Item Code",
        "category": "Product Group",
        "quantity_sold": "Quantity",
        "price": "Selling Price",
        "unit_cost": "Cost",
        "promotion_active": "Promotion",
        "inventory_level": "Stock",
    },
    delimiter="|",
    encoding="latin-1",
    date_format="%d/%m/%Y",
    decimal=",",
    true_text="1",
    false_text="0",
    quoting=csv.QUOTE_ALL,
    label_style="fr_es",
    segment_labels={"loyalty": "Fidélité", "walk-in": "Passage", "business": "Professionnel"},
    product_ids=IdStyle("A-", 3),
    transaction_ids=IdStyle("TK", 6),
    customer_ids=IdStyle("CL", 5),
)

DIALECTS: tuple[Dialect, ...] = (
    STANDARD_CSV,
    EU_SEMICOLON,
    US_POS_TSV,
    SPREADSHEET_XLSX,
    PARQUET_EXPORT,
    PIPE_QUOTED_CSV,
)
DIALECTS_BY_NAME: dict[str, Dialect] = {dialect.name: dialect for dialect in DIALECTS}
