//! The guarantee scenarios of `tests/suite/` (ties larger than a page, rows moving while a
//! pass pages, a stopped pass, backfill deletions, quarantine then release) on the shipped
//! stock locations and customer addresses, on both backends, against the fake's own
//! descriptions of their endpoints with its realistic records (nulls, Turkish text, fields
//! kept in `extra`).

mod common;
mod suite;

use std::marker::PhantomData;

use common::*;
use fake_oms::{CUSTOMER_ADDRESSES, Record, STOCK_LOCATIONS};
use oms_sync::resource::{CustomerAddresses, StockLocations};
use oms_sync::timefmt::canonical;
use suite::Suite;

/// The fake's stock location `id` (its fields as the generator makes them) at `at(ms, id)`.
fn location(id: i64, ms: i64) -> Record {
    let mut r = fake_oms::synthetic_stock_locations(1, id as u64).remove(0);
    r.id = id;
    r.modified_date = at(ms, id);
    r
}

fn address(id: i64, ms: i64) -> Record {
    let mut r = fake_oms::synthetic_customer_addresses(&[id % 40 + 1], 1, id as u64).remove(0);
    r.id = id;
    r.modified_date = at(ms, id);
    r
}

static LOCATIONS: Suite<StockLocations> = Suite {
    fake: &STOCK_LOCATIONS,
    make: location,
    edit: |w, n| w.set("priority", n).unwrap(),
    spoil: |w| {
        serde_json::json!({
            "id": w.id, "modified_date": canonical(&w.modified_date), "name": "Kadıköy Mağaza",
            "is_active": "yes"
        })
    },
    setup: None,
    _r: PhantomData,
};

static ADDRESSES: Suite<CustomerAddresses> = Suite {
    fake: &CUSTOMER_ADDRESSES,
    make: address,
    edit: |w, n| w.set("title", format!("İş {n}")).unwrap(),
    spoil: |w| {
        serde_json::json!({
            "id": w.id, "address_type": "customer", "modified_date": canonical(&w.modified_date),
            "customer": "Ayşe"
        })
    },
    setup: None,
    _r: PhantomData,
};

#[tokio::test]
async fn stock_locations_ties_larger_than_a_page() {
    each_backend(|| LOCATIONS.ties()).await;
}

#[tokio::test]
async fn stock_locations_moving_while_paging() {
    each_backend(|| LOCATIONS.drift()).await;
}

#[tokio::test]
async fn stock_locations_stopped_pass_claims_only_what_it_stored() {
    each_backend(|| LOCATIONS.stop()).await;
}

#[tokio::test]
async fn stock_locations_backfill_deletions() {
    each_backend(|| LOCATIONS.deletions()).await;
}

#[tokio::test]
async fn stock_locations_quarantine_then_release() {
    each_backend(|| LOCATIONS.quarantine()).await;
}

#[tokio::test]
async fn customer_addresses_ties_larger_than_a_page() {
    each_backend(|| ADDRESSES.ties()).await;
}

#[tokio::test]
async fn customer_addresses_moving_while_paging() {
    each_backend(|| ADDRESSES.drift()).await;
}

#[tokio::test]
async fn customer_addresses_stopped_pass_claims_only_what_it_stored() {
    each_backend(|| ADDRESSES.stop()).await;
}

#[tokio::test]
async fn customer_addresses_backfill_deletions() {
    each_backend(|| ADDRESSES.deletions()).await;
}

#[tokio::test]
async fn customer_addresses_quarantine_then_release() {
    each_backend(|| ADDRESSES.quarantine()).await;
}
