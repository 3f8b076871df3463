//! The routes a fake serves: the customers' store, always there (empty unless given rows), and
//! the stores of any other described resources, one route each ([`Stores`]).

use std::any::Any;

use super::page::{PageCtx, serve_page};
use super::reply::Reply;
use super::store::{Row, Store};

/// A store as the server sees it: its route, and a page of it.
trait Endpoint: Send {
    fn path(&self) -> &'static str;
    fn resource(&self) -> &'static crate::Resource;
    fn serve(&mut self, cx: PageCtx<'_>) -> Reply;
    fn as_any(&mut self) -> &mut dyn Any;
}

impl<R: Row> Endpoint for Store<R> {
    fn path(&self) -> &'static str {
        self.resource().path
    }

    fn resource(&self) -> &'static crate::Resource {
        Store::resource(self)
    }

    fn serve(&mut self, cx: PageCtx<'_>) -> Reply {
        serve_page(self, cx)
    }

    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
}

/// Every store of a fake OMS, one route each: customers (`Store`), plus any number of
/// [`crate::Resource`]s (`Store<Record>`, or a store of another [`Row`] type).
///
/// ```
/// use fake_oms::{Field, Record, Resource, Store, Stores};
/// static WIDGETS: Resource = Resource::new(
///     "/api/v1/oms/widgets/",
///     &[Field::integer("id"), Field::timestamp("modified_date")],
/// );
/// let t = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
/// let mut stores = Stores::new(Store::new())
///     .with(Store::from_records(&WIDGETS, vec![Record::new(&WIDGETS, 1, t)]));
/// assert_eq!(stores.get_mut::<Record>(WIDGETS.path).map(|s| s.len()), Some(1));
/// ```
pub struct Stores {
    customers: Store,
    others: Vec<Box<dyn Endpoint>>,
}

impl Stores {
    /// The customers' route alone.
    pub fn new(customers: Store) -> Stores {
        Stores {
            customers,
            others: Vec::new(),
        }
    }

    /// [`Stores::add`], by value.
    pub fn with<R: Row>(mut self, store: Store<R>) -> Stores {
        self.add(store);
        self
    }

    /// Serves `store` on its resource's path, in place of what was served there.
    pub fn add<R: Row>(&mut self, mut store: Store<R>) {
        let path = store.resource().path;
        self.others.retain(|e| e.path() != path);
        if path == self.customers.resource().path
            && let Some(customers) = (&mut store as &mut dyn Any).downcast_mut::<Store>()
        {
            std::mem::swap(&mut self.customers, customers);
            return;
        }
        self.others.push(Box::new(store));
    }

    /// The customers' store.
    pub fn customers(&mut self) -> &mut Store {
        &mut self.customers
    }

    /// The store served at `path`, if it holds rows of type `R`.
    pub fn get_mut<R: Row>(&mut self, path: &str) -> Option<&mut Store<R>> {
        match self.others.iter_mut().find(|e| e.path() == path) {
            Some(e) => e.as_any().downcast_mut::<Store<R>>(),
            None if path == self.customers.resource().path => {
                (&mut self.customers as &mut dyn Any).downcast_mut::<Store<R>>()
            }
            None => None,
        }
    }

    /// The description of the route at `path`, if one is served there.
    pub(crate) fn resource(&self, path: &str) -> Option<&'static crate::Resource> {
        match self.others.iter().find(|e| e.path() == path) {
            Some(e) => Some(e.resource()),
            None if path == self.customers.resource().path => Some(self.customers.resource()),
            None => None,
        }
    }

    /// The routes served, customers first.
    pub fn paths(&self) -> Vec<&'static str> {
        let mut v = vec![self.customers.resource().path];
        v.extend(self.others.iter().map(|e| e.path()));
        v
    }

    pub(crate) fn serves(&self, path: &str) -> bool {
        path == self.customers.resource().path || self.others.iter().any(|e| e.path() == path)
    }

    /// A page of the route at `path`; `None` if nothing is served there.
    pub(crate) fn serve(&mut self, path: &str, cx: PageCtx<'_>) -> Option<Reply> {
        match self.others.iter_mut().find(|e| e.path() == path) {
            Some(e) => Some(e.serve(cx)),
            None if path == self.customers.resource().path => {
                Some(serve_page(&mut self.customers, cx))
            }
            None => None,
        }
    }
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("paths", &self.paths())
            .finish()
    }
}
