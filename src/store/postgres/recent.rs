//! The orders the batch writer wrote or read lately, as they were stored once it committed:
//! the next events of such an order, and the first event of an order it never saw, are
//! written without reading the order first. Each such write is still guarded by the order's
//! head (`domain::plan`), so an order another writer changed meanwhile fails the write, and
//! is read again. A redelivery of an id the writer remembers is read: its answer comes from
//! the record.

use std::collections::HashMap;

use crate::domain::plan::{Loaded, StoredOrder};
use crate::domain::{Change, Delivery, Event};

/// Orders remembered per generation; at most two generations are kept (~2 KiB an order). An
/// order's next event usually comes within seconds, while its order is still remembered.
const GENERATION: usize = 1024;

#[derive(Default)]
pub(super) struct RecentOrders {
    current: HashMap<String, Memory>,
    previous: HashMap<String, Memory>,
}

#[derive(Clone)]
enum Memory {
    Stored(Box<StoredOrder>),
    /// A write of the order failed: read it before the next one.
    Unsure,
}

/// What a batch must read, and what it takes from memory.
#[derive(Debug, Default)]
pub(super) struct Recalled {
    /// Sorted.
    pub orders_to_read: Vec<String>,
    /// Orders whose last write failed (a race lost, most likely): read and written under
    /// their rows' locks, so that a hot order's writers take turns instead of losing races
    /// to each other. Sorted.
    pub orders_to_lock: Vec<String>,
    pub ids_to_read: Vec<String>,
    /// Orders taken from memory; every other order not read is new.
    pub remembered: Loaded,
}

impl RecentOrders {
    fn get(&mut self, order_id: &str) -> Option<&Memory> {
        if let Some(memory) = self.previous.remove(order_id) {
            self.insert(order_id.to_owned(), memory);
        }
        self.current.get(order_id)
    }

    fn insert(&mut self, order_id: String, memory: Memory) {
        if self.current.len() >= GENERATION && !self.current.contains_key(&order_id) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(order_id, memory);
    }

    /// Splits `deliveries` into what is read and what is written from memory. An order is
    /// read when one of its deliveries is a redelivery of an event it remembers, when it is
    /// unsure, or when it is unknown and the delivery does not create it.
    pub fn recall(&mut self, deliveries: &[&Delivery]) -> Recalled {
        let mut recalled = Recalled::default();
        let mut to_read: Vec<&str> = Vec::new();
        let mut to_lock: Vec<&str> = Vec::new();
        for delivery in deliveries {
            let Event::Order(event) = &delivery.event else {
                continue;
            };
            let read = match self.get(&event.order_id) {
                Some(Memory::Stored(stored)) => stored.life.records(&delivery.event_id),
                Some(Memory::Unsure) => {
                    to_lock.push(&event.order_id);
                    true
                }
                None => !matches!(event.change, Change::Created(_)),
            };
            if read {
                to_read.push(&event.order_id);
            }
        }
        for orders in [&mut to_read, &mut to_lock] {
            orders.sort_unstable();
            orders.dedup();
        }
        for delivery in deliveries {
            let order = match &delivery.event {
                Event::Order(event) => Some(event.order_id.as_str()),
                Event::Other { .. } => None,
            };
            match order {
                Some(order) if to_read.binary_search(&order).is_err() => {
                    if let Some(Memory::Stored(stored)) = self.current.get(order) {
                        recalled
                            .remembered
                            .orders
                            .insert(order.to_owned(), StoredOrder::clone(stored));
                    }
                }
                _ => recalled.ids_to_read.push(delivery.event_id.clone()),
            }
        }
        recalled.orders_to_read = to_read.into_iter().map(str::to_owned).collect();
        recalled.orders_to_lock = to_lock.into_iter().map(str::to_owned).collect();
        recalled
    }

    /// The orders of a committed batch, as stored now.
    pub fn remember(&mut self, orders: Vec<(String, StoredOrder)>) {
        for (order_id, stored) in orders {
            self.insert(order_id, Memory::Stored(Box::new(stored)));
        }
    }

    /// The orders of a batch that did not commit, or lost a race: read before the next write.
    pub fn doubt(&mut self, orders: Vec<String>) {
        for order_id in orders {
            self.previous.remove(&order_id);
            self.insert(order_id, Memory::Unsure);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::plan::plan;
    use crate::domain::OrderState;

    fn delivery(event_id: &str, order_id: &str, change: Change) -> Delivery {
        Delivery::example(event_id, order_id, change)
    }

    fn created(event_id: &str, order_id: &str) -> Delivery {
        delivery(
            event_id,
            order_id,
            Change::Created(OrderState::example("C")),
        )
    }

    fn updated(event_id: &str, order_id: &str) -> Delivery {
        delivery(
            event_id,
            order_id,
            Change::Updated(OrderState::example("D")),
        )
    }

    #[test]
    fn a_new_order_and_a_remembered_one_are_written_unread() {
        let mut recent = RecentOrders::default();
        let first = created("c1", "O1");
        let written = plan(&[&first], Loaded::default(), Utc::now());
        recent.remember(written.orders);

        let next = updated("u1", "O1");
        let brand_new = created("c2", "O2");
        let recalled = recent.recall(&[&next, &brand_new]);
        assert!(recalled.orders_to_read.is_empty() && recalled.ids_to_read.is_empty());
        assert!(recalled.remembered.orders.contains_key("O1"));
        assert!(
            !recalled.remembered.orders.contains_key("O2"),
            "new: nothing stored"
        );
    }

    #[test]
    fn a_redelivery_an_unknown_order_and_a_doubted_one_are_read() {
        let mut recent = RecentOrders::default();
        let first = created("c1", "O1");
        let written = plan(&[&first], Loaded::default(), Utc::now());
        recent.remember(written.orders);
        recent.doubt(vec!["O3".into()]);

        let again = created("c1", "O1");
        let unknown = updated("u2", "O2");
        let doubted = created("c3", "O3");
        let recalled = recent.recall(&[&again, &unknown, &doubted]);
        assert_eq!(recalled.orders_to_read, ["O1", "O2", "O3"]);
        assert_eq!(recalled.orders_to_lock, ["O3"], "read under lock");
        assert_eq!(recalled.ids_to_read, ["c1", "u2", "c3"]);
        assert!(recalled.remembered.orders.is_empty());
    }

    #[test]
    fn memory_is_bounded_to_two_generations() {
        let mut recent = RecentOrders::default();
        for n in 0..(GENERATION * 3) {
            recent.doubt(vec![format!("O{n}")]);
        }
        assert!(recent.current.len() + recent.previous.len() <= 2 * GENERATION);
        let newest = format!("O{}", GENERATION * 3 - 1);
        assert!(matches!(recent.get(&newest), Some(Memory::Unsure)));
    }
}
