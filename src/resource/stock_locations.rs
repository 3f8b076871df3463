//! Stock locations: `GET /api/v1/oms/stocklocations/list-simple/` (no separator in
//! `stocklocations`). The vendor's response table documents 17 fields (its copy ends in
//! `priority`); they are declared here in its order. Nullability is not documented, so every
//! field but the keys may be null. Anything else the server sends (transfer or shipper flags,
//! packaging times) lands in `extra`.
//!
//! Relations: `address` is an address id; the vendor does not say of which resource (customer
//! addresses of type `retail_store`, or the separate stock location addresses resource). It is
//! stored as sent and no foreign key is declared (see docs/resources.md).

crate::declare_resource! {
    /// The stock locations resource (stores, warehouses and other supply points).
    resource StockLocations {
        record: StockLocation,
        fields: StockLocationFields,
        name: "stock_locations",
        path: "/api/v1/oms/stocklocations/list-simple/",
        table: "stock_locations",
        cursor: modified_date,
        // Not documented for this endpoint: inferred from the customers sibling's OPTIONS
        // `filters`. The endpoint check reads what the server really takes.
        filters: { modified_date: true, id_gt: true, sort: true },
        indexes: [stock_locations_modified_date(modified_date)],
        columns: {
            id: BigInt,
            created_date: Option<Timestamp>,
            modified_date: Timestamp,
            omnitron_id: Option<BigInt>,
            name: Option<Text>,
            // `store` or `warehouse` (inferred from the inventory guide; values not listed).
            stock_location_type: Option<Text>,
            fax_number: Option<Text>,
            erp_code: Option<Text>,
            // An address id; which resource it points to is not documented.
            address: Option<BigInt>,
            is_fulfillment_center: Option<Bool>,
            is_pickup_location: Option<Bool>,
            is_delivery_location: Option<Bool>,
            is_fast_delivery_available: Option<Bool>,
            is_return_available: Option<Bool>,
            is_active: Option<Bool>,
            priority: Option<BigInt>,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{Cell, Resource, Row};
    use serde_json::value::RawValue;

    /// The fields of the vendor's response table, in its order (written here, not derived
    /// from the declaration).
    const FIELDS: [&str; 16] = [
        "id",
        "created_date",
        "modified_date",
        "omnitron_id",
        "name",
        "stock_location_type",
        "fax_number",
        "erp_code",
        "address",
        "is_fulfillment_center",
        "is_pickup_location",
        "is_delivery_location",
        "is_fast_delivery_available",
        "is_return_available",
        "is_active",
        "priority",
    ];

    fn parse(s: &str) -> StockLocation {
        let raw: Box<RawValue> = serde_json::from_str(s).unwrap();
        StockLocations::parse(&raw).unwrap()
    }

    #[test]
    fn columns_are_the_documented_fields_then_extra() {
        let names: Vec<&str> = StockLocation::COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(&names[..FIELDS.len()], FIELDS);
        assert_eq!(names[FIELDS.len()..], ["extra"]);
    }

    /// The example record of the notes: booleans as booleans, a null fax number, and a field
    /// the table does not document kept in `extra`.
    #[test]
    fn parses_a_location_and_keeps_undocumented_fields() {
        let l = parse(
            r#"{"id": 7, "created_date": "2022-11-02T10:15:31.530912Z",
            "modified_date": "2023-12-29T15:02:48.114376Z", "omnitron_id": 45,
            "name": "Gebze Depo", "stock_location_type": "warehouse", "fax_number": null,
            "erp_code": "DEPO-41", "address": 122, "is_fulfillment_center": true,
            "is_pickup_location": false, "is_delivery_location": false,
            "is_fast_delivery_available": false, "is_return_available": true,
            "is_active": true, "priority": 1, "is_transfer_location": true}"#,
        );
        let f = StockLocationFields::of(&l);
        assert_eq!(f.name, Some("Gebze Depo"));
        assert_eq!(f.fax_number, None);
        assert_eq!(f.address, Some(122));
        assert_eq!(f.is_fulfillment_center, Some(true));
        assert_eq!(f.is_pickup_location, Some(false));
        assert_eq!(f.priority, Some(1));
        assert_eq!(f.extra, Some(r#"{"is_transfer_location":true}"#));
        assert_eq!(l.cell(9), Cell::Bool(Some(true)));
    }

    /// A flag sent as a string is a bad record (quarantined), not a silent false.
    #[test]
    fn a_flag_of_another_type_is_refused() {
        let raw: Box<RawValue> = serde_json::from_str(
            r#"{"id": 1, "modified_date": "2023-12-29T15:02:48Z", "is_active": "yes"}"#,
        )
        .unwrap();
        let e = StockLocations::parse(&raw).unwrap_err();
        assert!(e.error.contains("is_active"), "{}", e.error);
        assert_eq!(e.id, Some(1));
    }
}
