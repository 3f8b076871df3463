//! Customers: `GET /api/v1/oms/customers/list-simple/`. Everything customer-specific lives
//! here: one declaration (fields as the vendor documents them, in the order it writes them),
//! from which the record, its parsing and its warehouse columns follow.

crate::declare_resource! {
    /// The customers resource.
    resource Customers {
        record: Customer,
        fields: CustomerFields,
        name: "customers",
        path: "/api/v1/oms/customers/list-simple/",
        table: "customers",
        cursor: modified_date,
        // `sort` and `id__gt` are listed in the endpoint's OPTIONS `filters`; the
        // `modified_date` lookups are the ones the sync relies on (see shared API notes).
        filters: { modified_date: true, id_gt: true, sort: true },
        indexes: [customers_modified_date(modified_date), customers_email(email)],
        columns: {
            id: BigInt,
            created_date: Option<Timestamp>,
            modified_date: Timestamp,
            omnitron_id: Option<BigInt>,
            email: Option<Text>,
            first_name: Option<Text>,
            last_name: Option<Text>,
            phone_number: Option<Text>,
            erp_code: Option<Text>,
            channel: Option<BigInt>,
        }
    }
}

/// One accessor per column, reading its cell directly (no copy of the other fields).
macro_rules! accessors {
    ($($(#[$m:meta])* $col:ident: $ty:ty,)+) => {
        $(
            $(#[$m])*
            pub fn $col(&self) -> $ty {
                const I: usize = crate::resource::record::index_of(COLUMNS, stringify!($col));
                self.get(I)
            }
        )+
    };
}

impl Customer {
    pub fn new(f: CustomerFields<'_>) -> Customer {
        f.into()
    }

    /// The fields, borrowed: to build a changed copy (`Customer::new(CustomerFields { .. })`).
    pub fn fields(&self) -> CustomerFields<'_> {
        CustomerFields::of(self)
    }

    accessors! {
        created_date: Option<&str>,
        omnitron_id: Option<i64>,
        email: Option<&str>,
        first_name: Option<&str>,
        last_name: Option<&str>,
        phone_number: Option<&str>,
        erp_code: Option<&str>,
        channel: Option<i64>,
        /// JSON object of unmodelled fields, `None` when the API sent none.
        extra: Option<&str>,
    }

    pub fn modified_date(&self) -> &str {
        crate::resource::Keyed::modified_date(self)
    }
}

#[cfg(test)]
mod tests {
    /// The fields the vendor documents for a customer, in the order its example writes them
    /// (written here, not derived from the declaration, so a reordered or missing column
    /// fails a test).
    const FIELDS: [&str; 10] = [
        "id",
        "created_date",
        "modified_date",
        "omnitron_id",
        "email",
        "first_name",
        "last_name",
        "phone_number",
        "erp_code",
        "channel",
    ];
    use super::*;
    use crate::resource::{BadRecord, Cell, Resource, Row};
    use serde_json::Value;
    use serde_json::value::RawValue;

    fn parse(s: &str) -> Result<Customer, BadRecord> {
        let raw: Box<RawValue> = serde_json::from_str(s).unwrap();
        Customers::parse(&raw)
    }

    fn text() -> impl proptest::strategy::Strategy<Value = Option<String>> {
        proptest::option::of("(|[a-zé\"ğ ]{1,12})")
    }

    proptest::proptest! {
        /// The one text buffer gives back each field as given: absent and empty stay apart,
        /// neighbours do not bleed into each other, and equality is equality of the fields.
        #[test]
        fn text_fields_come_back_as_given(
            t in proptest::collection::vec(text(), 7),
            md in "[0-9:TZ.-]{0,27}",
            ints in proptest::array::uniform3(proptest::option::of(proptest::num::i64::ANY)),
        ) {
            let f = CustomerFields {
                id: ints[0].unwrap_or(1),
                created_date: t[0].as_deref(),
                modified_date: &md,
                omnitron_id: ints[1],
                email: t[1].as_deref(),
                first_name: t[2].as_deref(),
                last_name: t[3].as_deref(),
                phone_number: t[4].as_deref(),
                erp_code: t[5].as_deref(),
                channel: ints[2],
                extra: t[6].as_deref(),
            };
            let c = Customer::new(f);
            proptest::prop_assert_eq!(c.fields(), f);
            proptest::prop_assert_eq!(c.clone(), Customer::new(c.fields()));
            // Moving one field's text to its neighbour keeps the buffer's bytes but must not
            // compare equal.
            if let Some(email) = f.email.filter(|e| !e.is_empty()) {
                let moved = Customer::new(CustomerFields {
                    email: Some(""),
                    first_name: Some(&format!("{email}{}", f.first_name.unwrap_or(""))),
                    ..f
                });
                proptest::prop_assert_ne!(&moved, &c);
            }
            let cells: Vec<Cell<'_>> = (0..Customer::COLUMNS.len()).map(|i| c.cell(i)).collect();
            proptest::prop_assert_eq!(&cells[1], &Cell::Text(f.created_date));
            proptest::prop_assert_eq!(&cells[2], &Cell::Text(Some(&md)));
            proptest::prop_assert_eq!(&cells[4], &Cell::Text(f.email));
            proptest::prop_assert_eq!(&cells[8], &Cell::Text(f.erp_code));
            proptest::prop_assert_eq!(&cells[10], &Cell::Text(f.extra));
        }
    }

    #[test]
    fn absent_and_empty_text_differ() {
        let base = CustomerFields {
            id: 1,
            modified_date: "2023-09-13T11:20:37.500200Z",
            ..CustomerFields::default()
        };
        let empty = Customer::new(CustomerFields {
            email: Some(""),
            ..base
        });
        let absent = Customer::new(base);
        assert_eq!(empty.email(), Some(""));
        assert_eq!(absent.email(), None);
        assert_ne!(empty, absent);
        assert_eq!(
            format!("{absent:?}"),
            "Customer { id: 1, created_date: None, modified_date: \"2023-09-13T11:20:37.500200Z\", \
             omnitron_id: None, email: None, first_name: None, last_name: None, \
             phone_number: None, erp_code: None, channel: None, extra: None }"
        );
    }

    #[test]
    fn parses_the_vendor_example() {
        let c = parse(
            r#"{"id": 4, "created_date": "2023-08-16T07:46:00.912768Z",
            "modified_date": "2023-09-13T11:20:37.500200Z", "omnitron_id": 60,
            "email": "tugce.test@akinon.com", "first_name": "Tuğçe", "last_name": "Test",
            "phone_number": null, "erp_code": null, "channel": 1}"#,
        )
        .unwrap();
        assert_eq!(c.id, 4);
        assert_eq!(c.first_name(), Some("Tuğçe"));
        assert_eq!(c.modified_date(), "2023-09-13T11:20:37.500200Z");
        assert_eq!(c.phone_number(), None);
        assert_eq!(c.extra(), None);
    }

    #[test]
    fn unknown_fields_are_kept_and_escapes_work() {
        let c = parse(
            r#"{"id": 1, "modified_date": "2023-09-13T14:20:37.5002+03:00",
            "first_name": "\u0130pek \"q\"", "loyalty_tier": "gold", "tags": [1, 2]}"#,
        )
        .unwrap();
        assert_eq!(c.first_name(), Some("İpek \"q\""));
        assert_eq!(c.modified_date(), "2023-09-13T11:20:37.500200Z");
        let extra: Value = serde_json::from_str(c.extra().unwrap()).unwrap();
        assert_eq!(extra["loyalty_tier"], "gold");
        assert_eq!(extra["tags"], serde_json::json!([1, 2]));
    }

    /// The borrowed wire struct must still read datetimes that JSON escapes force it to copy
    /// (this was the owned fallback's job before the two wire structs were merged).
    #[test]
    fn escaped_datetimes_parse() {
        let c = parse(
            r#"{"id": 2, "created_date": "2023-08-16T07:46:00\u002e912768Z",
            "modified_date": "2023-09-13T11:20:37\u002e5002Z"}"#,
        )
        .unwrap();
        assert_eq!(c.modified_date(), "2023-09-13T11:20:37.500200Z");
        assert_eq!(c.created_date(), Some("2023-08-16T07:46:00.912768Z"));
    }

    /// With several bad fields the error names the first in the order diagnose has always
    /// used: required, then created_date, then the integers, then the strings.
    #[test]
    fn diagnosis_order_with_several_bad_fields() {
        let e = parse(r#"{"id": 1, "modified_date": 5, "created_date": 6}"#).unwrap_err();
        assert!(e.error.contains("field `modified_date`"), "{}", e.error);
        let e =
            parse(r#"{"id": 1, "modified_date": "x", "email": 1, "channel": "w"}"#).unwrap_err();
        assert!(e.error.contains("field `channel`"), "{}", e.error);
        let e = parse(r#"{"id": 1, "modified_date": "x", "omnitron_id": "o", "created_date": 1}"#)
            .unwrap_err();
        assert!(e.error.contains("field `created_date`"), "{}", e.error);
        let e = parse(r#"{"modified_date": "x", "last_name": 2, "first_name": 3}"#).unwrap_err();
        assert!(e.error.contains("field `id` is missing"), "{}", e.error);
    }

    /// What the derived `flatten` struct did with repeated keys, kept: a documented field twice
    /// is a bad record with serde's message (diagnose reads the last value and finds nothing
    /// wrong), an undocumented one keeps its last value.
    #[test]
    fn repeated_fields() {
        let e =
            parse(r#"{"id": 1, "modified_date": "2023-09-13T11:20:37Z", "id": 2}"#).unwrap_err();
        assert_eq!(e.error, "duplicate field `id` at line 1 column 55");
        assert_eq!(e.id, Some(2));
        let e =
            parse(r#"{"id": 1, "email": null, "email": "a", "modified_date": "x"}"#).unwrap_err();
        assert!(
            e.error.starts_with("duplicate field `email`"),
            "{}",
            e.error
        );
        let c = parse(r#"{"id": 1, "modified_date": "2023-09-13T11:20:37Z", "zz": 1, "zz": 2}"#)
            .unwrap();
        assert_eq!(c.extra(), Some(r#"{"zz":2}"#));
    }

    /// Names are matched after unescaping, and every documented field has its own slot (none
    /// would silently land in `extra`).
    #[test]
    fn keys_are_read_by_name() {
        let c = parse(r#"{"i\u0064": 3, "modified_date": "2023-09-13T11:20:37Z", "z\u007a": 1}"#)
            .unwrap();
        assert_eq!(c.id, 3);
        assert_eq!(c.extra(), Some(r#"{"zz":1}"#));
        for f in FIELDS
            .iter()
            .filter(|f| !matches!(**f, "id" | "modified_date"))
        {
            let c = parse(&format!(
                r#"{{"id": 1, "modified_date": "2023-09-13T11:20:37Z", "{f}": null}}"#
            ))
            .unwrap();
            assert_eq!(c.extra(), None, "{f} has a column of its own");
        }
    }

    #[test]
    fn columns_are_the_fields_then_extra() {
        let names: Vec<&str> = Customer::COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(&names[..FIELDS.len()], FIELDS);
        assert_eq!(names[FIELDS.len()..], ["extra"]);
        let c =
            parse(r#"{"id": 9, "modified_date": "2023-09-13T11:20:37Z", "channel": 3}"#).unwrap();
        assert_eq!(c.cell(0), Cell::Int(Some(9)));
        assert_eq!(c.cell(2), Cell::Text(Some("2023-09-13T11:20:37.000000Z")));
        assert_eq!(c.cell(9), Cell::Int(Some(3)));
        assert_eq!(c.cell(10), Cell::Text(None));
    }

    #[test]
    fn bad_records_keep_what_can_be_read() {
        let e = parse(r#"{"id": 7, "modified_date": "not a date"}"#).unwrap_err();
        assert_eq!(e.id, Some(7));
        assert!(e.error.contains("modified_date"), "{}", e.error);
        let e = parse(r#"{"modified_date": "2023-09-13T11:20:37Z"}"#).unwrap_err();
        assert_eq!(e.id, None);
        assert_eq!(
            e.modified_date.as_deref(),
            Some("2023-09-13T11:20:37.000000Z")
        );
        let e = parse(r#"{"id": "x", "modified_date": "2023-09-13T11:20:37Z"}"#).unwrap_err();
        assert!(e.raw.contains("\"x\""));
        assert!(e.error.contains("field `id`"), "{}", e.error);
        let e = parse(r#"{"id": 3, "modified_date": "2023-09-13T11:20:37Z", "created_date": 17}"#)
            .unwrap_err();
        assert!(e.error.contains("field `created_date`"), "{}", e.error);
        let e =
            parse(r#"{"id": 3, "modified_date": "2023-09-13T11:20:37Z", "channel": {"id": 1}}"#)
                .unwrap_err();
        assert!(e.error.contains("field `channel`"), "{}", e.error);
        assert!(
            parse("[1]")
                .unwrap_err()
                .error
                .contains("not a JSON object")
        );
        assert!(parse(r#"[1,2]"#).is_err());
        assert!(
            parse(r#"{"id": 1, "modified_date": "2023-09-13T11:20:37Z", "channel": "web"}"#)
                .is_err()
        );
    }
}
