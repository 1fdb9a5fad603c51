// signal.js: a client for the signal-relay HTTP long-polling protocol
// (docs/protocol.md). No dependencies, no build step. It works in any page
// that has fetch and AbortController:
//
//   import { SignalClient } from './signal.js';
//   const signal = new SignalClient({ room: 'demo' });
//   signal.addEventListener('message', (e) => console.log(e.detail.from, e.detail.data));
//   signal.addEventListener('join', (e) => console.log('joined:', e.detail.peer));
//   const { peers } = await signal.join();
//   await signal.send({ type: 'offer', sdp }, { to: peers[0] });
//   for await (const m of signal.messages()) { ... }   // or iterate instead of listening
//   signal.leave();                     // also done when the page closes
//
// Events: 'peers' {peers}, 'join' {peer}, 'leave' {peer, reason} (room
// events; reason is 'left' when the peer hung up, 'expired' when it only
// went quiet, see docs/protocol.md);
// 'message' {from, data, seq} (from other peers); 'reset' {} (the server
// lost our cursor: a restart, or we expired); 'status' {online, error,
// fatal} (fatal: the client stopped, e.g. its ticket was refused).
//
// On a server that admits ticket holders only, give a ticket (a JWT from
// the operator's backend) or an async function that returns one:
//   new SignalClient({ room: 'demo', ticket: () => fetch('/my-ticket').then((r) => r.text()) })
// It is presented (Authorization: Bearer) only where the name is claimed:
// on joining, and on rejoining after the server lost our name (a 401 to a
// poll), when a function is called again for a fresh one.

const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504]);
/** The page events on which the client leaves the room (see join). */
const LEAVE_EVENTS = ['beforeunload', 'pagehide'];
// Messages one POST may carry (the server's MAX_BATCH, docs/protocol.md).
const MAX_BATCH = 32;

/** An HTTP error the server (or a proxy) answered with. */
export class SignalError extends Error {
  constructor(status, message) {
    super(`${status}: ${message}`);
    this.status = status;
    this.reason = message;
  }
}

/** 128 random bits as 32 hex digits. */
export function randomToken() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });

/** Milliseconds to wait: the server's Retry-After if given, else `fallback`. */
function retryAfter(response, fallback) {
  const seconds = Number(response?.headers.get('Retry-After'));
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : fallback;
}

export class SignalClient extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.room    room to join
   * @param {string} [options.peer]  our name (default: random)
   * @param {string} [options.base]  server origin (default: this page's)
   * @param {number} [options.pollTimeout] seconds a poll may park (default 25)
   * @param {number} [options.maxBackoff]  longest wait between retries, ms
   * @param {string|(() => string|Promise<string>)} [options.ticket] a join ticket, or a function that gets one
   */
  constructor({ room, peer, base = '', pollTimeout = 25, maxBackoff = 5000, ticket = null }) {
    super();
    this.ticketSource = ticket;
    // The ticket to present on the next request that may claim our name.
    this.ticket = null;
    this.claimed = false;
    this.room = room;
    this.peer = peer ?? `p-${randomToken().slice(0, 8)}`;
    this.base = base;
    this.pollTimeout = pollTimeout;
    this.maxBackoff = maxBackoff;
    // Offered on the first request, so that request is safe to retry.
    this.token = randomToken();
    this.since = 0;
    this.epoch = null;
    this.online = false;
    this.stopped = new AbortController();
    // Sends waiting for the one in flight: { data, to, resolve, reject }.
    this.outbox = [];
    this.sending = false;
    this.onPageClose = () => this.leave();
  }

  /**
   * The headers of a request that may claim our name: with the ticket
   * until the name is ours. A function source is asked once per claim.
   */
  async claimHeaders(headers) {
    if (!this.ticketSource || this.claimed) return headers;
    if (this.ticket === null) {
      this.ticket =
        typeof this.ticketSource === 'function' ? await this.ticketSource() : this.ticketSource;
    }
    return { ...headers, Authorization: `Bearer ${this.ticket}` };
  }

  /** Our name was lost (we expired, the server restarted): claim it again. */
  reclaim() {
    this.claimed = false;
    if (typeof this.ticketSource === 'function') this.ticket = null;
  }

  url(extra = {}) {
    const query = new URLSearchParams({ room: this.room, peer: this.peer, ...extra });
    return `${this.base}/signal?${query}`;
  }

  /**
   * Joins the room: starts the receive loop and resolves with the peers
   * already there, once the first poll has answered.
   */
  join() {
    if (this.joined) return this.joined;
    this.joined = new Promise((resolve, reject) => {
      this.addEventListener('peers', (e) => resolve(e.detail), { once: true });
      this.loop().catch(reject);
    });
    // pagehide is the standard moment to leave; beforeunload comes earlier
    // on a tab close, and in Firefox ESR it is the one that works: a leave
    // started from pagehide of a closing tab holding peer connections was
    // lost in 4 of 10 runs (tests/browser.rs, mixed mesh), from
    // beforeunload in none of 10. A page that cancels its unload after
    // this has left the room and needs a new client.
    for (const event of LEAVE_EVENTS) globalThis.addEventListener?.(event, this.onPageClose);
    return this.joined;
  }

  /** The receive loop: one long-poll at a time, resumed from the cursor. */
  async loop() {
    let backoff = 250;
    while (!this.stopped.signal.aborted) {
      const query = { since: this.since, timeout: this.pollTimeout };
      if (this.epoch) query.epoch = this.epoch;
      let response;
      try {
        const presented = this.ticketSource && !this.claimed;
        response = await fetch(this.url(query), {
          headers: await this.claimHeaders({ 'X-Peer-Token': this.token }),
          signal: this.stopped.signal,
          cache: 'no-store',
        });
        if (response.status === 401 && this.ticketSource && !presented) {
          // The server no longer knows our name: rejoin with a ticket.
          this.reclaim();
          continue;
        }
        if (response.status === 200) {
          const batch = await response.json();
          this.claimed = true;
          this.setOnline(true);
          backoff = 250;
          this.deliver(batch);
          continue;
        }
        const body = await response.json().catch(() => ({}));
        const error = new SignalError(response.status, body.error ?? response.statusText);
        if (!RETRYABLE.has(response.status)) {
          // 4xx: retrying the same request cannot help. Stop, say why.
          this.setOnline(false, error, true);
          throw error;
        }
        this.setOnline(false, error);
      } catch (error) {
        if (this.stopped.signal.aborted) return;
        if (error instanceof SignalError && !RETRYABLE.has(error.status)) throw error;
        // A network error (server restarting, proxy hiccup, laptop asleep):
        // the cursor did not move, so nothing is lost by trying again.
        this.setOnline(false, error);
      }
      await sleep(retryAfter(response, backoff), this.stopped.signal);
      backoff = Math.min(backoff * 2, this.maxBackoff);
    }
  }

  deliver(batch) {
    if (batch.reset) this.emit('reset', {});
    for (const message of batch.messages) {
      const { from, data, seq } = message;
      if (from === null) {
        // Room events: peers / join / leave.
        this.emit(data.type, data);
      } else {
        this.emit('message', { from, data, seq });
      }
    }
    this.since = batch.next;
    this.epoch = batch.epoch;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setOnline(online, error = null, fatal = false) {
    if (online === this.online && !error) return;
    this.online = online;
    this.emit('status', { online, error, fatal });
  }

  /**
   * Sends `data` (a JSON object) to `to`, or to everyone else in the room.
   * One send is in flight at a time, so messages arrive in the order they
   * were made; whatever is made meanwhile for the same recipient goes in
   * the next POST as one batch (a burst of trickled candidates costs one or
   * two requests, not one each). Each POST is retried with one
   * Idempotency-Key, so a retry is never stored twice. Resolves with the
   * server's receipt {delivered, queued} for the POST that carried it.
   */
  send(data, { to } = {}) {
    return new Promise((resolve, reject) => {
      this.outbox.push({ data, to, resolve, reject });
      if (!this.sending) this.flush();
    });
  }

  async flush() {
    this.sending = true;
    while (this.outbox.length > 0) {
      const to = this.outbox[0].to;
      let count = 1;
      while (count < this.outbox.length && count < MAX_BATCH && this.outbox[count].to === to) {
        count++;
      }
      const sends = this.outbox.splice(0, count);
      const body = count === 1 ? sends[0].data : sends.map((send) => send.data);
      try {
        const receipt = await this.sendNow(body, to);
        for (const send of sends) send.resolve(receipt);
      } catch (error) {
        for (const send of sends) send.reject(error);
      }
    }
    this.sending = false;
  }

  async sendNow(data, to) {
    const key = randomToken();
    const body = JSON.stringify(data);
    let backoff = 250;
    for (let tries = 1; ; tries++) {
      let response;
      try {
        const presented = this.ticketSource && !this.claimed;
        response = await fetch(this.url(to ? { to } : {}), {
          method: 'POST',
          headers: await this.claimHeaders({
            'Content-Type': 'application/json',
            'X-Peer-Token': this.token,
            'Idempotency-Key': key,
          }),
          body,
          signal: this.stopped.signal,
        });
        if (response.status === 401 && this.ticketSource && !presented && tries < 8) {
          this.reclaim();
          continue;
        }
        if (response.status === 202) {
          this.claimed = true;
          return await response.json();
        }
        const reply = await response.json().catch(() => ({}));
        const error = new SignalError(response.status, reply.error ?? response.statusText);
        if (!RETRYABLE.has(response.status) || tries >= 8) throw error;
      } catch (error) {
        if (error instanceof SignalError || this.stopped.signal.aborted || tries >= 8) throw error;
      }
      await sleep(retryAfter(response, backoff), this.stopped.signal);
      backoff = Math.min(backoff * 2, this.maxBackoff);
    }
  }

  /** The messages from other peers as an async iterator. */
  async *messages() {
    const queue = [];
    let wake = null;
    const onMessage = (e) => {
      queue.push(e.detail);
      wake?.();
    };
    this.addEventListener('message', onMessage);
    try {
      while (!this.stopped.signal.aborted) {
        if (queue.length === 0) {
          await new Promise((resolve) => {
            wake = resolve;
            this.stopped.signal.addEventListener('abort', resolve, { once: true });
          });
          wake = null;
          continue;
        }
        yield queue.shift();
      }
    } finally {
      this.removeEventListener('message', onMessage);
    }
  }

  /**
   * Leaves the room: stops polling and tells the server, best effort, so
   * the others see `leave` now rather than after the peer TTL. Safe to call
   * while the page closes: a beacon outlives the page.
   */
  leave() {
    if (this.stopped.signal.aborted) return;
    // The beacon first, before anything else: a closing tab's handler may
    // not get far. A beacon (a POST with leave=1) is what browsers promise
    // to send from a closing page: in Firefox ESR a keepalive fetch from a
    // tab being closed was lost in 5 of 12 tries, a beacon in none of 12.
    // The DELETE is the fallback where there is no sendBeacon or it
    // refuses to queue. Polling stops only afterwards.
    const beacon = this.url({ token: this.token, leave: 1 });
    if (!globalThis.navigator?.sendBeacon?.(beacon)) {
      fetch(this.url({ token: this.token }), { method: 'DELETE', keepalive: true }).catch(() => {});
    }
    for (const event of LEAVE_EVENTS) globalThis.removeEventListener?.(event, this.onPageClose);
    this.stopped.abort();
  }
}
