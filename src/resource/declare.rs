//! [`declare_resource!`]: one declaration per resource, from which its record type, parser,
//! cells, column list, index list and [`super::Spec`] follow.

/// Declares an OMS list resource at module level (one module per resource):
///
/// ```
/// oms_sync::declare_resource! {
///     /// Widgets: `GET /api/v1/widgets/`.
///     resource Widgets {
///         record: Widget,
///         fields: WidgetFields,
///         name: "widgets",
///         path: "/api/v1/widgets/",
///         table: "widgets",
///         cursor: modified_date,
///         filters: { modified_date: true, id_gt: true, sort: true },
///         indexes: [widgets_modified_date(modified_date)],
///         columns: {
///             id: BigInt,
///             modified_date: Timestamp,
///             label: Option<Text>,
///             active: Option<Bool>,
///         }
///     }
/// }
/// let w: Widget = WidgetFields { id: 1, modified_date: "2024-01-01T00:00:00.000000Z", ..Default::default() }.into();
/// assert_eq!(WidgetFields::of(&w).id, 1);
/// ```
///
/// It defines, in the calling module: the marker type (`Widgets`, which implements
/// [`crate::resource::Resource`]), the record type alias (`Widget`), a struct of borrowed
/// fields (`WidgetFields`, convertible both ways), `COLUMNS` (the fields in order, then the
/// `extra` JSON column that keeps every undeclared field the API sends) and `SPEC`.
/// Column types: `BigInt`, `Text`, `Timestamp` (an instant, stored canonically), `Bool`;
/// `Option<…>` when the API may send null. The first field is `id: BigInt`; the cursor is a
/// required `Timestamp`. Both are checked when the crate compiles.
#[macro_export]
macro_rules! declare_resource {
    (
        $(#[$meta:meta])*
        resource $marker:ident {
            record: $record:ident,
            fields: $fields:ident,
            name: $name:literal,
            path: $path:literal,
            table: $table:literal,
            cursor: $cursor:ident,
            filters: { modified_date: $f_md:literal, id_gt: $f_id:literal, sort: $f_sort:literal $(,)? },
            indexes: [$($index:ident($($icol:ident),+)),* $(,)?],
            columns: {
                $($col:ident : $w:ident $(< $k:ident >)?),+ $(,)?
            } $(,)?
        }
    ) => {
        $(#[$meta])*
        pub struct $marker;

        impl $marker {
            /// The declaration as data (also `<Self as Resource>::SPEC`).
            pub const SPEC: &'static $crate::resource::Spec = &SPEC;
        }

        /// The API fields in order, then `extra` (undeclared fields, as one JSON object).
        pub const COLUMNS: &[$crate::resource::Column] = &[
            $($crate::declare_resource!(@column $col $w $($k)?),)+
            $crate::resource::Column {
                name: "extra",
                ty: $crate::resource::ColumnType::Json,
                nullable: true,
            },
        ];

        const SLOTS: [u8; COLUMNS.len()] = $crate::resource::record::slots(COLUMNS);
        const CURSOR: usize = $crate::resource::record::index_of(COLUMNS, stringify!($cursor));
        const _: () = $crate::resource::record::check_columns(COLUMNS, CURSOR);

        /// The declaration as data.
        pub const SPEC: $crate::resource::Spec = $crate::resource::Spec {
            name: $name,
            path: $path,
            table: $table,
            columns: COLUMNS,
            cursor: stringify!($cursor),
            indexes: &[$($crate::resource::Index {
                name: stringify!($index),
                columns: &[$(stringify!($icol)),+],
            }),*],
            filters: $crate::resource::Filters {
                modified_date: $f_md,
                id_gt: $f_id,
                sort: $f_sort,
            },
        };

        impl $crate::resource::record::Declared for $marker {
            const RECORD: &'static str = stringify!($record);
            const COLUMNS: &'static [$crate::resource::Column] = COLUMNS;
            const SLOTS: &'static [u8] = &SLOTS;
            const CURSOR: usize = CURSOR;
        }

        /// One stored record (see [`$crate::resource::record::Record`]).
        pub type $record = $crate::resource::record::Record<
            $marker,
            { $crate::resource::record::count_ints(COLUMNS) },
            { $crate::resource::record::count_texts(COLUMNS) },
        >;

        /// The fields of a record, the text borrowed: what a record is built from.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $fields<'a> {
            $(pub $col: $crate::declare_resource!(@type 'a, $w $($k)?),)+
            /// JSON object of undeclared fields, `None` when the API sent none.
            pub extra: Option<&'a str>,
        }

        impl<'a> From<$fields<'a>> for $record {
            fn from(f: $fields<'a>) -> $record {
                <$record>::from_cells(&[
                    $($crate::resource::Cell::from(f.$col),)+
                    $crate::resource::Cell::Text(f.extra),
                ])
            }
        }

        impl<'a> $fields<'a> {
            /// The fields of `r`, borrowed.
            pub fn of(r: &'a $record) -> $fields<'a> {
                use $crate::resource::Row as _;
                $fields {
                    $($col: $crate::resource::FromCell::from_cell(r.cell({
                        const I: usize =
                            $crate::resource::record::index_of(COLUMNS, stringify!($col));
                        I
                    })),)+
                    extra: $crate::resource::FromCell::from_cell(r.cell(COLUMNS.len() - 1)),
                }
            }
        }

        impl $crate::resource::Resource for $marker {
            type Record = $record;
            const SPEC: &'static $crate::resource::Spec = &SPEC;
            const NAME: &'static str = $name;
            const PATH: &'static str = $path;
            const TABLE: &'static str = $table;

            fn parse(
                raw: &$crate::__private::RawValue,
            ) -> Result<$record, $crate::resource::BadRecord> {
                $crate::resource::parse::parse(raw)
            }

            fn read<'de, D: $crate::__private::Deserializer<'de>>(
                d: D,
            ) -> Result<$record, D::Error> {
                $crate::resource::parse::read(d)
            }
        }
    };

    (@column $col:ident Option $k:ident) => {
        $crate::resource::Column {
            name: stringify!($col),
            ty: $crate::resource::ColumnType::$k,
            nullable: true,
        }
    };
    (@column $col:ident $k:ident) => {
        $crate::resource::Column {
            name: stringify!($col),
            ty: $crate::resource::ColumnType::$k,
            nullable: false,
        }
    };
    (@type $lt:lifetime, Option $k:ident) => {
        Option<$crate::declare_resource!(@type $lt, $k)>
    };
    (@type $lt:lifetime, BigInt) => { i64 };
    (@type $lt:lifetime, Bool) => { bool };
    (@type $lt:lifetime, Text) => { &$lt str };
    (@type $lt:lifetime, Timestamp) => { &$lt str };
}
