//! Where the HTTP layer asks for a join ticket, and what it answers when
//! one is missing. The ticket rules themselves are [`crate::ticket`]'s.
//!
//! A request that claims a name (a peer's first poll or send) needs a
//! ticket admitting it; one that speaks for a peer that already exists
//! needs only that peer's token. Which of the two a request is only the
//! store knows, so the ticket is checked up front (when one is presented)
//! and the store is told whether the request may claim
//! ([`Credentials::may_claim`]); the refusal is kept and answered only if
//! the store says a claim was needed.

use std::time::SystemTime;

use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;

use super::{Api, ApiError};
use crate::name::Name;
use crate::store::{Credentials, Store, StoreError};
use crate::ticket::{Grant, Ticket, TicketRefusal, bearer};

impl<S: Store> Api<S> {
    /// Whether the server requires tickets (any ticket key is configured).
    pub(super) fn requires_tickets(&self) -> bool {
        self.settings.tickets.is_some()
    }

    /// The request's `Authorization: Bearer` ticket, checked for its
    /// signature, times and audience; `None` when the server takes no
    /// tickets.
    pub(super) fn presented_ticket(
        &self,
        headers: &HeaderMap,
    ) -> Option<Result<Ticket, TicketRefusal>> {
        let keys = self.settings.tickets.as_ref()?;
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Some(Err(TicketRefusal::missing()));
        };
        Some(match bearer(value.as_bytes()) {
            Some(ticket) => keys.check(ticket, SystemTime::now()),
            None => Err(TicketRefusal::new(
                crate::ticket::Reason::Malformed,
                "the Authorization header is not Bearer TICKET",
            )),
        })
    }

    /// Whether `who` may claim its name in its room with the request's
    /// ticket: sets [`Credentials::may_claim`], and returns the refusal to
    /// answer with if the store finds the claim was needed.
    pub(super) fn admit_claim(
        &self,
        headers: &HeaderMap,
        who: &mut Credentials,
    ) -> Option<Box<TicketRefusal>> {
        let refusal = match self.presented_ticket(headers)? {
            Ok(ticket) => ticket.admits(&who.room, Some(&who.peer), Grant::Join).err(),
            Err(refusal) => Some(refusal),
        };
        who.may_claim = refusal.is_none();
        refusal.map(Box::new)
    }

    /// The reply to a store error for a request without a ticket that
    /// admits it: the ticket's refusal whenever the store needed a claim or
    /// a token the request lacked, so that someone without a ticket learns
    /// nothing of who is in a room; the store's own error otherwise.
    pub(super) fn refused(
        &self,
        error: StoreError,
        refusal: Option<Box<TicketRefusal>>,
    ) -> ApiError {
        match (error, refusal) {
            (
                StoreError::ClaimRefused { .. }
                | StoreError::TokenMissing { .. }
                | StoreError::TokenMismatch { .. },
                Some(refusal),
            ) => self.ticket_refused(*refusal),
            (error, _) => error.into(),
        }
    }

    /// A ticket refusal as the reply, counted by reason.
    pub(super) fn ticket_refused(&self, refusal: TicketRefusal) -> ApiError {
        self.metrics.ticket_refused(refusal.reason);
        refusal.into()
    }

    /// A ticket that grants `grant` in `room` (or anywhere, for `None`),
    /// when the server requires tickets: `Ok(None)` when it does not.
    pub(super) fn require_ticket(
        &self,
        headers: &HeaderMap,
        room: Option<&Name>,
        grant: Grant,
    ) -> Result<Option<Ticket>, ApiError> {
        let Some(checked) = self.presented_ticket(headers) else {
            return Ok(None);
        };
        let admitted = checked.and_then(|ticket| {
            let room = room.unwrap_or(&ticket.room).clone();
            ticket.admits(&room, None, grant).map(|()| ticket)
        });
        admitted
            .map(Some)
            .map_err(|refusal| self.ticket_refused(refusal))
    }
}
