//! Stock locations and customer addresses: the fake's own wire descriptions of Akinon OMS's
//! `stocklocations/list-simple/` ([`STOCK_LOCATIONS`], the vendor's response table) and
//! `customer_addresses/list-simple/` ([`CUSTOMER_ADDRESSES`], the documented start of its
//! OPTIONS answer plus the fields a tenant plausibly sends), and realistic synthetic rows for
//! both: Turkish stores and warehouses, several addresses of several types per customer whose
//! `customer` is a real customer id, nulls, and the bulk-update ties of the customers.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::record::Record;
use crate::resource::{Field, Resource};
use crate::synthetic_records;

/// The route of the stock locations list (no separator in `stocklocations`).
pub const STOCK_LOCATIONS_PATH: &str = "/api/v1/oms/stocklocations/list-simple/";
/// The route of the customer addresses list (underscore in `customer_addresses`).
pub const CUSTOMER_ADDRESSES_PATH: &str = "/api/v1/oms/customer_addresses/list-simple/";

/// `GET /api/v1/oms/stocklocations/list-simple/`: the 16 fields of the vendor's response
/// table, in its order. Nullability is not documented; strings and `address` come null in
/// practice, the flags and `priority` always have a value.
pub static STOCK_LOCATIONS: Resource = Resource::new(
    STOCK_LOCATIONS_PATH,
    &[
        Field::integer("id"),
        Field::timestamp("created_date"),
        Field::timestamp("modified_date"),
        Field::integer("omnitron_id").nullable(),
        Field::text("name").nullable(),
        Field::text("stock_location_type").nullable(),
        Field::text("fax_number").nullable(),
        Field::text("erp_code").nullable().exact_filter("erp_code"),
        Field::integer("address").nullable(),
        Field::boolean("is_fulfillment_center"),
        Field::boolean("is_pickup_location"),
        Field::boolean("is_delivery_location"),
        Field::boolean("is_fast_delivery_available"),
        Field::boolean("is_return_available"),
        Field::boolean("is_active"),
        Field::integer("priority"),
    ],
);

/// `GET /api/v1/oms/customer_addresses/list-simple/`: `id`, `address_type` and
/// `created_date` as documented, then the fields of Akinon's address family. The location
/// fields (`country`, `city`, `township`, `district`) are sent too, as ids, written after the
/// described ones ([`Record::with_extra`]).
pub static CUSTOMER_ADDRESSES: Resource = Resource::new(
    CUSTOMER_ADDRESSES_PATH,
    &[
        Field::integer("id"),
        Field::text("address_type"),
        Field::timestamp("created_date"),
        Field::timestamp("modified_date"),
        Field::integer("omnitron_id").nullable(),
        Field::integer("customer").nullable(),
        Field::text("first_name").nullable(),
        Field::text("last_name").nullable(),
        Field::text("email").nullable(),
        Field::text("phone_number").nullable(),
        Field::text("line").nullable(),
        Field::text("postcode").nullable(),
        Field::text("title").nullable(),
        Field::text("notes").nullable(),
        Field::text("company_name").nullable(),
        Field::text("tax_office").nullable(),
        Field::text("tax_no").nullable(),
        Field::boolean("e_bill_taxpayer"),
        Field::boolean("is_corporate"),
    ],
);

/// (district, city, plate code, postcode prefix)
const DISTRICTS: [(&str, &str, i64, &str); 12] = [
    ("Kadıköy", "İstanbul", 34, "347"),
    ("Beşiktaş", "İstanbul", 34, "343"),
    ("Üsküdar", "İstanbul", 34, "346"),
    ("Çankaya", "Ankara", 6, "066"),
    ("Keçiören", "Ankara", 6, "063"),
    ("Karşıyaka", "İzmir", 35, "355"),
    ("Bornova", "İzmir", 35, "350"),
    ("Nilüfer", "Bursa", 16, "161"),
    ("Muratpaşa", "Antalya", 7, "071"),
    ("Şahinbey", "Gaziantep", 27, "270"),
    ("Gebze", "Kocaeli", 41, "414"),
    ("Tepebaşı", "Eskişehir", 26, "261"),
];
const STREETS: [&str; 6] = [
    "Bağdat Cad.",
    "Atatürk Bulvarı",
    "Cumhuriyet Mah. İnönü Sok.",
    "Çarşı Cad.",
    "Gül Sok.",
    "Şehit Öğretmen Cad.",
];
const FIRST: [&str; 8] = [
    "Ayşe", "Mehmet", "Elif", "Mustafa", "Zeynep", "Emre", "Gülşen", "Oğuz",
];
const LAST: [&str; 6] = ["Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Öztürk"];
const TITLES: [&str; 4] = ["Ev", "İş", "Yazlık", "Annemler"];

/// `n` stock locations for `seed`: about one in five a warehouse (`Depo`: fulfilment and
/// returns, no pickup), the others stores (`Mağaza`: pickup and delivery to customers); fax
/// numbers mostly null, ERP codes now and then null, one in ten inactive, and now and then a
/// field the vendor's table does not list (`is_transfer_location`), as a tenant may send.
pub fn synthetic_stock_locations(n: usize, seed: u64) -> Vec<Record> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5706);
    synthetic_records(&STOCK_LOCATIONS, n, seed)
        .into_iter()
        .map(|r| {
            let id = r.id;
            let (district, _, plate, _) = DISTRICTS[id as usize % DISTRICTS.len()];
            let warehouse = rng.random_ratio(1, 5);
            let (kind, label, code) = if warehouse {
                ("warehouse", "Depo", "DEPO")
            } else {
                ("store", "Mağaza", "MGZ")
            };
            let mut r = r
                .with("omnitron_id", id + 40)
                .with("name", format!("{district} {label}"))
                .with("stock_location_type", kind)
                .with(
                    "fax_number",
                    rng.random_ratio(1, 6)
                        .then(|| format!("0{plate:03}751{:04}", id % 10_000)),
                )
                .with(
                    "erp_code",
                    (!rng.random_ratio(1, 8)).then(|| format!("{code}-{plate:03}-{id:02}")),
                )
                .with("address", (!rng.random_ratio(1, 10)).then_some(100 + id))
                .with("is_fulfillment_center", warehouse || rng.random_ratio(1, 3))
                .with("is_pickup_location", !warehouse)
                .with("is_delivery_location", !warehouse && rng.random_bool(0.7))
                .with("is_fast_delivery_available", rng.random_ratio(1, 4))
                .with("is_return_available", warehouse || rng.random_bool(0.5))
                .with("is_active", !rng.random_ratio(1, 10))
                .with(
                    "priority",
                    if warehouse {
                        1
                    } else {
                        rng.random_range(2..=5)
                    },
                );
            if rng.random_ratio(1, 4) {
                r = r.with_extra("is_transfer_location", json!(warehouse));
            }
            r
        })
        .collect()
}

/// About `per_customer` addresses per customer of `customers` (1 to 2×, in id order of the
/// addresses, so a customer's addresses are spread over the list): mostly `customer`
/// addresses with the customer's id, one in twenty a `retail_store` or `checkout_provider`
/// address without a customer; titles, Turkish districts and streets, postcodes with leading
/// zeros, null notes and phones, now and then a corporate address with tax fields. The
/// location ids (`country`, `city`, `township`, `district`) come after the described fields.
pub fn synthetic_customer_addresses(
    customers: &[i64],
    per_customer: usize,
    seed: u64,
) -> Vec<Record> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xADD5);
    let n = (customers.len() * per_customer.max(1) * 3 / 2).max(1);
    synthetic_records(&CUSTOMER_ADDRESSES, n, seed ^ 0xADD)
        .into_iter()
        .map(|r| {
            let id = r.id;
            let (district, _, plate, post) = DISTRICTS[rng.random_range(0..DISTRICTS.len())];
            let kind = match rng.random_range(0..40) {
                0 => "retail_store",
                1 => "checkout_provider",
                _ => "customer",
            };
            let customer = (kind == "customer" && !customers.is_empty())
                .then(|| customers[rng.random_range(0..customers.len())]);
            let first = FIRST[rng.random_range(0..FIRST.len())];
            let last = LAST[rng.random_range(0..LAST.len())];
            let corporate = rng.random_ratio(1, 12);
            r.with("address_type", kind)
                .with(
                    "omnitron_id",
                    (!rng.random_ratio(1, 50)).then_some(80_000 + id),
                )
                .with("customer", customer)
                .with("first_name", first)
                .with("last_name", (!rng.random_ratio(1, 30)).then_some(last))
                .with(
                    "email",
                    customer.map(|c| format!("{}.{c}@example.com", crate::ascii_fold(first))),
                )
                .with(
                    "phone_number",
                    (!rng.random_ratio(1, 4)).then(|| format!("053{:08}", id % 100_000_000)),
                )
                .with(
                    "line",
                    format!(
                        "{} No: {} D: {}",
                        STREETS[rng.random_range(0..STREETS.len())],
                        rng.random_range(1..200),
                        rng.random_range(1..30)
                    ),
                )
                .with("postcode", format!("{post}{:02}", rng.random_range(0..100)))
                .with(
                    "title",
                    Some(TITLES[rng.random_range(0..TITLES.len())]).filter(|_| kind == "customer"),
                )
                .with(
                    "notes",
                    rng.random_ratio(1, 8)
                        .then_some("Kapıcıya bırakabilirsiniz"),
                )
                .with(
                    "company_name",
                    corporate.then(|| format!("{last} Ticaret A.Ş.")),
                )
                .with("tax_office", corporate.then_some(district))
                .with("tax_no", corporate.then(|| format!("{:010}", id * 7919)))
                .with("e_bill_taxpayer", corporate && rng.random_bool(0.6))
                .with("is_corporate", corporate)
                .with_extra("country", json!(1))
                .with_extra("city", json!(plate))
                .with_extra("township", json!(plate * 100 + (id % 40)))
                .with_extra("district", json!(plate * 10_000 + (id % 400)))
        })
        .collect()
}
