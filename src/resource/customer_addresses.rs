//! Customer addresses: `GET /api/v1/oms/customer_addresses/list-simple/` (underscore in
//! `customer_addresses`). The vendor documents only the start of this endpoint's OPTIONS
//! answer: `id`, `address_type` (`customer`, `retail_store`, `checkout_provider`) and
//! `created_date`. Every other column below is INFERRED (from the OMS siblings and Akinon's
//! Commerce address schema) and declared nullable, so a tenant that leaves one out still
//! syncs. Fields whose shape is in doubt (`country`, `city`, `township`, `district` may come as
//! ids or as nested objects) are not declared: they land in `extra` with every other field
//! the server sends, never dropped.
//!
//! Relations: `customer` refers to a customer id (inferred); rows of type `retail_store` or
//! `checkout_provider` probably have none. No foreign key is enforced: an address may arrive
//! before its customer (see docs/resources.md).

crate::declare_resource! {
    /// The customer addresses resource.
    resource CustomerAddresses {
        record: CustomerAddress,
        fields: CustomerAddressFields,
        name: "customer_addresses",
        path: "/api/v1/oms/customer_addresses/list-simple/",
        table: "customer_addresses",
        cursor: modified_date,
        // Not documented for this endpoint: inferred from the customers sibling's OPTIONS
        // `filters`. The endpoint check reads what the server really takes.
        filters: { modified_date: true, id_gt: true, sort: true },
        indexes: [
            customer_addresses_modified_date(modified_date),
            customer_addresses_customer(customer),
        ],
        columns: {
            // Documented.
            id: BigInt,
            address_type: Option<Text>,
            created_date: Option<Timestamp>,
            // Inferred from here on.
            modified_date: Timestamp,
            omnitron_id: Option<BigInt>,
            customer: Option<BigInt>,
            first_name: Option<Text>,
            last_name: Option<Text>,
            email: Option<Text>,
            phone_number: Option<Text>,
            line: Option<Text>,
            // Text: leading zeros matter.
            postcode: Option<Text>,
            title: Option<Text>,
            notes: Option<Text>,
            company_name: Option<Text>,
            tax_office: Option<Text>,
            tax_no: Option<Text>,
            e_bill_taxpayer: Option<Bool>,
            is_corporate: Option<Bool>,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{Resource, Row};
    use serde_json::Value;
    use serde_json::value::RawValue;

    /// The documented fields, then the inferred ones we type, in the order of the notes'
    /// example record (written here, not derived from the declaration).
    const FIELDS: [&str; 19] = [
        "id",
        "address_type",
        "created_date",
        "modified_date",
        "omnitron_id",
        "customer",
        "first_name",
        "last_name",
        "email",
        "phone_number",
        "line",
        "postcode",
        "title",
        "notes",
        "company_name",
        "tax_office",
        "tax_no",
        "e_bill_taxpayer",
        "is_corporate",
    ];

    #[test]
    fn columns_are_the_declared_fields_then_extra() {
        let names: Vec<&str> = CustomerAddress::COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(&names[..FIELDS.len()], FIELDS);
        assert_eq!(names[FIELDS.len()..], ["extra"]);
    }

    /// The notes' example record: the location ids of uncertain shape stay in `extra`, as
    /// sent, whether numbers or nested objects.
    #[test]
    fn parses_an_address_and_keeps_the_rest_in_extra() {
        let raw: Box<RawValue> = serde_json::from_str(
            r#"{"id": 5012, "address_type": "customer",
            "created_date": "2023-10-06T08:45:10.114502Z",
            "modified_date": "2024-02-19T13:02:44.903117Z", "omnitron_id": 88231,
            "customer": 2, "first_name": "Ayşe", "last_name": "Yılmaz",
            "email": "ayse.yilmaz@example.com", "phone_number": "05321234567",
            "country": 1, "city": {"id": 34, "name": "İstanbul"}, "township": 412,
            "district": 3187, "line": "Caferağa Mah. Moda Cad. No: 12 D: 4",
            "postcode": "034710", "title": "Ev", "notes": null, "company_name": null,
            "tax_office": null, "tax_no": null, "e_bill_taxpayer": false,
            "is_corporate": false}"#,
        )
        .unwrap();
        let a = CustomerAddresses::parse(&raw).unwrap();
        let f = CustomerAddressFields::of(&a);
        assert_eq!(f.address_type, Some("customer"));
        assert_eq!(f.customer, Some(2));
        assert_eq!(f.postcode, Some("034710"));
        assert_eq!(f.is_corporate, Some(false));
        assert_eq!(f.notes, None);
        let extra: Value = serde_json::from_str(f.extra.unwrap()).unwrap();
        assert_eq!(extra["country"], 1);
        assert_eq!(extra["city"]["name"], "İstanbul");
        assert_eq!(extra["district"], 3187);
    }

    /// A store's address has no customer: null is a value, not a bad record.
    #[test]
    fn an_address_without_customer_is_stored() {
        let raw: Box<RawValue> = serde_json::from_str(
            r#"{"id": 9, "address_type": "retail_store", "customer": null,
            "modified_date": "2024-02-19T13:02:44Z"}"#,
        )
        .unwrap();
        let a = CustomerAddresses::parse(&raw).unwrap();
        assert_eq!(CustomerAddressFields::of(&a).customer, None);
        assert_eq!(a.id, 9);
    }
}
