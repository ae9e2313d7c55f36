//! The page's current run, held so that only the newest can be stored. Async work (a run, a frame decode,
//! a download) takes a [`Ticket`] when it starts; whatever it hands back under a ticket that a newer run has
//! voided is dropped, so a slow, stale run can never overwrite a newer one. Work on the stored run borrows it
//! one at a time: a second borrower waits while it is lent out ([`Latest::lend`] says which case holds).

/// Proof of which run a piece of async work belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// Why [`Latest::lend`] has nothing to lend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The newest run's value is lent out under this ticket: wait for it to come back.
    Lent(Ticket),
    /// The newest run has not finished, or there is no run.
    Empty,
}

#[derive(Debug)]
enum Held<T> {
    Empty,
    Here(T),
    Lent,
}

/// The newest run's value, if it has one and it is not lent out.
#[derive(Debug)]
pub struct Latest<T> {
    generation: u64,
    value: Held<T>,
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Self { generation: 0, value: Held::Empty }
    }
}

impl<T> Latest<T> {
    /// Starts a new run: every older ticket is void and the current value is dropped.
    pub fn begin(&mut self) -> Ticket {
        self.generation += 1;
        self.value = Held::Empty;
        Ticket(self.generation)
    }

    /// Stores `value` if `ticket` is the newest run's; says whether it did.
    pub fn finish(&mut self, ticket: Ticket, value: T) -> bool {
        let current = ticket.0 == self.generation;
        if current {
            self.value = Held::Here(value);
        }
        current
    }

    /// Takes the value out for async work (no borrow is held across an await), with the ticket to give it
    /// back under through [`finish`](Self::finish).
    pub fn lend(&mut self) -> Result<(Ticket, T), Unavailable> {
        let ticket = Ticket(self.generation);
        match std::mem::replace(&mut self.value, Held::Lent) {
            Held::Here(v) => Ok((ticket, v)),
            Held::Lent => Err(Unavailable::Lent(ticket)),
            Held::Empty => {
                self.value = Held::Empty;
                Err(Unavailable::Empty)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_run_never_overwrites_a_newer_one() {
        let mut slot = Latest::default();
        assert_eq!(slot.lend().unwrap_err(), Unavailable::Empty, "no run yet");
        let first = slot.begin();
        let second = slot.begin();
        assert!(slot.finish(second, "second"));
        assert!(!slot.finish(first, "first"), "the first run finished late");
        let (ticket, lent) = slot.lend().unwrap();
        assert_eq!(lent, "second");
        assert_eq!(slot.lend().unwrap_err(), Unavailable::Lent(ticket), "lent out: a second borrower waits");
        // A new run starts while a frame of the old one decodes: the old run is not given back.
        let third = slot.begin();
        assert!(!slot.finish(ticket, lent));
        assert_eq!(slot.lend().unwrap_err(), Unavailable::Empty, "the new run has not finished");
        assert!(slot.finish(third, "third"));
        let (ticket, lent) = slot.lend().unwrap();
        assert!(slot.finish(ticket, lent), "no newer run: given back");
        assert_eq!(slot.lend().map(|(_, v)| v), Ok("third"));
    }
}
