//! The page's current run, held so that only the newest can be stored. Async work (a run, a frame decode)
//! takes a [`Ticket`] when it starts; whatever it hands back under a ticket that a newer run has voided is
//! dropped, so a slow, stale run can never overwrite a newer one.

/// Proof of which run a piece of async work belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// The newest run's value, if it has one and it is not lent out.
#[derive(Debug)]
pub struct Latest<T> {
    generation: u64,
    value: Option<T>,
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Self { generation: 0, value: None }
    }
}

impl<T> Latest<T> {
    /// Starts a new run: every older ticket is void and the current value is dropped.
    pub fn begin(&mut self) -> Ticket {
        self.generation += 1;
        self.value = None;
        Ticket(self.generation)
    }

    /// Stores `value` if `ticket` is the newest run's; says whether it did.
    pub fn finish(&mut self, ticket: Ticket, value: T) -> bool {
        let current = ticket.0 == self.generation;
        if current {
            self.value = Some(value);
        }
        current
    }

    /// Takes the value out for async work (no borrow is held across an await), with the ticket to give it
    /// back under through [`finish`](Self::finish).
    pub fn lend(&mut self) -> Option<(Ticket, T)> {
        self.value.take().map(|v| (Ticket(self.generation), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_run_never_overwrites_a_newer_one() {
        let mut slot = Latest::default();
        let first = slot.begin();
        let second = slot.begin();
        assert!(slot.finish(second, "second"));
        assert!(!slot.finish(first, "first"), "the first run finished late");
        let (ticket, lent) = slot.lend().unwrap();
        assert_eq!(lent, "second");
        assert!(slot.lend().is_none(), "lent out");
        // A new run starts while a frame of the old one decodes: the old run is not given back.
        let third = slot.begin();
        assert!(!slot.finish(ticket, lent));
        assert!(slot.lend().is_none());
        assert!(slot.finish(third, "third"));
        let (ticket, lent) = slot.lend().unwrap();
        assert!(slot.finish(ticket, lent), "no newer run: given back");
        assert_eq!(slot.lend().map(|(_, v)| v), Some("third"));
    }
}
