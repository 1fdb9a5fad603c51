// The demo page: a WebRTC call (a mesh of up to 6 peers) signaled through
// signal.js. URL parameters: ?room=NAME (default "demo"),
// ?ice=vanilla|trickle (default trickle), ?auto=1 (prepare on load and call
// whoever is in the room), ?relay=1 (media only through the TURN server:
// iceTransportPolicy "relay").
//
// Who offers: the peer that presses Connect (with ?auto=1, the newcomer, to
// the peers already in the room), so normally nobody collides. If two peers
// do offer at once, "perfect negotiation" settles it: the polite peer (the
// one with the greater name) rolls back and answers.
//
// A call outlives signaling: media does not pass through the server, so a
// peer whose signaling went quiet (`leave` with reason "expired") keeps its
// call. A call ends when the other side hangs up (reason "left"), or when
// the media connection fails and ICE restarts do not bring it back.
import { SignalClient } from './signal.js';

const params = new URLSearchParams(location.search);
// A join ticket travels in the fragment of an invite link
// (`/?room=R#ticket=JWT`): browsers never send a fragment, so it reaches no
// server log and no Referer. Its claims say which room and name it admits.
const ticket = new URLSearchParams(location.hash.slice(1)).get('ticket');
const ticketClaims = readClaims(ticket);
const room = params.get('room') || ticketClaims.room || 'demo';
const iceMode = params.get('ice') === 'vanilla' ? 'vanilla' : 'trickle';
const auto = params.get('auto') === '1';
const relayOnly = params.get('relay') === '1';
const MAX_REMOTE_PEERS = 5; // a mesh of 6
// A connection that is `disconnected` often heals by itself (a burst of
// lost packets); one that stays so this long is restarted.
const DISCONNECTED_GRACE_MS = 2000;
// ICE restart attempts: the first waits this long for the connection to
// come back, each next one twice as long (1, 2, 4, 8, 16 s: a path that
// returns soon recovers soon, one that stays away is not hammered), and
// after this many the call is ended.
const RESTART_FIRST_WAIT_MS = 1000;
const MAX_RESTARTS = 5;
// Both sides of a broken call see it break at once. Two crossing restart
// offers are glare, and Chromium's rollback of one can leave its sender
// stopped; so the impolite side restarts first and the polite one waits
// this much longer, by when the other's offer has normally arrived.
const POLITE_RESTART_DELAY_MS = 2500;
// How long a broken call waits for signaling with its peer to come back.
const SIGNALING_GIVE_UP_MS = 30_000;
// The longest a description waits for ICE gathering when it must carry
// every candidate: well inside the server's WHIP answer timeout (15 s).
const GATHERING_LIMIT_MS = 5000;

/** A ticket's claims, unverified: only to pick the room and name it is for. */
function readClaims(jwt) {
  try {
    const payload = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(payload)) ?? {};
  } catch {
    return {};
  }
}

/** Headers with the ticket, for the requests a ticket holder may make. */
function withTicket(headers = {}) {
  return ticket ? { ...headers, Authorization: `Bearer ${ticket}` } : headers;
}

const $ = (id) => document.getElementById(id);
const ui = {
  videos: $('videos'),
  local: $('local'),
  waiting: $('waiting'),
  prepare: $('prepare'),
  connect: $('connect'),
  status: $('status'),
  whip: $('whip-url'),
  whep: $('whep-url'),
  sent: $('sdp-sent'),
  received: $('sdp-received'),
};
$('room-name').textContent = room;
$('ice-mode').textContent = iceMode;

const state = {
  signal: null,
  stream: null,
  iceServers: [],
  // When the TURN credential in iceServers expires, and how long it lived
  // (ms); Infinity without one.
  iceExpiresAt: Infinity,
  iceLifetime: Infinity,
  members: new Set(),
  remotes: new Map(), // peer name -> Remote
  // Messages from each peer are handled one after another, in order.
  inbox: new Map(), // peer name -> Promise
  // Calls that ended, and why, for the user.
  ended: new Map(), // peer name -> reason
  error: null,
};

/**
 * A peer we are in a call with that is not in the room: it went quiet
 * (leave "expired"), since a leave "left" ends the call.
 */
function isQuiet(peer) {
  return state.remotes.has(peer) && !state.members.has(peer);
}

function rtcConfiguration() {
  return { iceServers: state.iceServers, iceTransportPolicy: relayOnly ? 'relay' : 'all' };
}

/** Fetches the ICE servers, with a TURN credential minted for us. */
async function loadIceServers() {
  const peer = encodeURIComponent(state.signal.peer);
  const response = await fetch(`/config?peer=${peer}`, { cache: 'no-store', headers: withTicket() });
  if (!response.ok) {
    const reason = (await response.json().catch(() => ({}))).error ?? response.statusText;
    throw new Error(`cannot get the ICE servers (${response.status}): ${reason}`);
  }
  const config = await response.json();
  state.iceServers = config.iceServers ?? [];
  // TURN REST usernames are "<unix expiry>:<id>" (docs/protocol.md).
  const expiries = state.iceServers
    .map((server) => /^(\d+):/.exec(server.username ?? ''))
    .filter(Boolean)
    .map((match) => Number(match[1]) * 1000);
  state.iceExpiresAt = expiries.length ? Math.min(...expiries) : Infinity;
  state.iceLifetime = state.iceExpiresAt - Date.now();
}

/** Fetches a new TURN credential when less than a tenth of its life (at most 5 min) is left. */
async function freshIceServers() {
  const margin = Math.min(state.iceLifetime / 10, 5 * 60_000);
  if (state.iceExpiresAt - Date.now() > margin) return;
  try {
    await loadIceServers();
  } catch (error) {
    console.warn(`cannot refresh the ICE servers: ${error.message}`);
  }
}

/** One remote peer: its connection, its tile, and negotiation state. */
class Remote {
  constructor(peer) {
    this.peer = peer;
    this.pc = new RTCPeerConnection(rtcConfiguration());
    this.polite = state.signal.peer > peer;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.pendingCandidates = [];
    this.tracksAdded = false;
    // False when the peer cannot take trickled candidates (a WHIP or WHEP
    // client, whose offer says "trickle": false): our descriptions then
    // wait for gathering and carry every candidate.
    this.trickle = true;
    // When this side started negotiating: the Connect click (our offer) or
    // the arrival of their offer. Connect times are measured from here.
    this.startedAt = performance.now();
    this.connectedAt = null;
    this.tile = makeTile(peer);
    this.closed = false;
    // ICE restarts: how many were made, how many in a row since the last
    // connected state, when the connection broke, and how long each
    // recovery took (ms from broken to connected again).
    this.restarts = 0;
    this.attempts = 0;
    this.brokenAt = null;
    this.recoveries = [];
    this.restartTimer = null;
    this.restartDue = Infinity;
    this.negotiatedAt = 0;
    this.candidateErrors = [];

    this.pc.onicecandidate = ({ candidate }) => {
      if (iceMode === 'trickle' && this.trickle && candidate) {
        send({ type: 'candidate', ice: candidate.toJSON() }, peer);
      }
    };
    this.pc.ontrack = ({ track, streams }) => {
      const video = this.tile.querySelector('video');
      if (streams[0]) {
        video.srcObject = streams[0];
      } else {
        // A track in no stream (some WHIP clients send no msid): gather the
        // peer's tracks into one, so audio does not replace video.
        if (!(video.srcObject instanceof MediaStream)) video.srcObject = new MediaStream();
        video.srcObject.addTrack(track);
      }
      video.play().catch(() => {});
    };
    this.pc.oniceconnectionstatechange = () => {
      const ice = this.pc.iceConnectionState;
      if ((ice === 'connected' || ice === 'completed') && this.connectedAt === null) {
        this.connectedAt = performance.now();
        console.info(`ICE ${ice} with ${peer} after ${Math.round(this.connectMs())} ms`);
      }
      render();
    };
    this.pc.onconnectionstatechange = () => {
      this.onConnectionState();
      render();
    };
    this.pc.onsignalingstatechange = render;
    this.pc.onicecandidateerror = ({ errorCode, url }) => {
      this.candidateErrors.push({ errorCode, url });
    };
  }

  onConnectionState() {
    const connection = this.pc.connectionState;
    if (connection === 'connected') {
      if (this.brokenAt !== null) {
        const ms = performance.now() - this.brokenAt;
        this.recoveries.push(ms);
        console.info(`connection with ${this.peer} recovered after ${Math.round(ms)} ms`);
      }
      this.brokenAt = null;
      this.attempts = 0;
      this.cancelRestart();
    } else if (connection === 'disconnected' || connection === 'failed') {
      this.brokenAt ??= performance.now();
      this.scheduleRestart(connection === 'failed' ? 0 : DISCONNECTED_GRACE_MS);
    }
  }

  isBroken() {
    return this.brokenAt !== null && !this.closed;
  }

  /** Restarts ICE in `delay` ms, unless one is due sooner. */
  scheduleRestart(delay) {
    const due = performance.now() + delay;
    if (this.closed || due >= this.restartDue) return;
    clearTimeout(this.restartTimer);
    this.restartDue = due;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      this.restartDue = Infinity;
      this.restart().catch(fail);
    }, delay);
  }

  cancelRestart() {
    clearTimeout(this.restartTimer);
    this.restartTimer = null;
    this.restartDue = Infinity;
  }

  /**
   * One ICE restart attempt: new ICE credentials in a new offer, so both
   * sides gather and check again (a path that came back, a TURN server
   * that restarted, a laptop on a new network). Needs signaling to the
   * peer; without it, waits and tries again.
   */
  async restart() {
    if (!this.isBroken()) return;
    if (this.attempts >= MAX_RESTARTS) {
      endCall(this.peer, `the connection failed and ${MAX_RESTARTS} ICE restarts did not restore it`);
      return;
    }
    const brokenFor = performance.now() - this.brokenAt;
    if (this.polite && this.attempts === 0 && brokenFor < POLITE_RESTART_DELAY_MS) {
      this.scheduleRestart(POLITE_RESTART_DELAY_MS - brokenFor);
      return;
    }
    const signalingUp = state.signal.online && state.members.has(this.peer);
    const wait = RESTART_FIRST_WAIT_MS * 2 ** this.attempts;
    // The peer may just have restarted, or an answer be on its way.
    const negotiating = performance.now() - this.negotiatedAt < RESTART_FIRST_WAIT_MS;
    if (signalingUp && !negotiating && this.pc.signalingState !== 'have-remote-offer') {
      this.attempts += 1;
      this.restarts += 1;
      console.info(`ICE restart ${this.attempts} with ${this.peer}`);
      await freshIceServers();
      try {
        this.pc.setConfiguration(rtcConfiguration());
      } catch (error) {
        console.warn(`cannot update the ICE servers: ${error.message}`);
      }
      this.pc.restartIce();
      await this.offer();
    } else if (!signalingUp && brokenFor > SIGNALING_GIVE_UP_MS) {
      endCall(this.peer, 'the connection failed and signaling with the peer did not come back');
      return;
    }
    this.scheduleRestart(wait);
  }

  connectMs() {
    return this.connectedAt === null ? null : this.connectedAt - this.startedAt;
  }

  addTracks() {
    if (this.tracksAdded) return;
    this.tracksAdded = true;
    for (const track of state.stream.getTracks()) this.pc.addTrack(track, state.stream);
  }

  async offer() {
    this.addTracks();
    if (this.connectedAt === null) this.startedAt = performance.now();
    this.negotiatedAt = performance.now();
    this.makingOffer = true;
    try {
      await this.pc.setLocalDescription();
    } finally {
      this.makingOffer = false;
    }
    await this.sendDescription();
  }

  /** Vanilla ICE (or a peer that cannot trickle) waits for gathering to finish, so the SDP carries every candidate. */
  async sendDescription() {
    if (iceMode === 'vanilla' || !this.trickle) await gatheringComplete(this.pc, GATHERING_LIMIT_MS);
    const { type, sdp } = this.pc.localDescription;
    ui.sent.value = sdp;
    await send({ type, sdp }, this.peer);
  }

  async onDescription(description) {
    const collision =
      description.type === 'offer' && (this.makingOffer || this.pc.signalingState !== 'stable');
    this.ignoreOffer = !this.polite && collision;
    if (this.ignoreOffer) return;
    this.negotiatedAt = performance.now();
    ui.received.value = description.sdp;
    await this.pc.setRemoteDescription(description); // rolls back our offer if polite
    for (const candidate of this.pendingCandidates.splice(0)) await this.addCandidate(candidate);
    if (description.type === 'offer') {
      if (this.connectedAt === null) this.startedAt = performance.now();
      this.addTracks(); // after the offer, so our tracks reuse its transceivers
      await this.pc.setLocalDescription();
      await this.sendDescription();
    }
  }

  async onCandidate(candidate) {
    // Candidates can outrun the description they belong to: keep them.
    if (!this.pc.remoteDescription) {
      this.pendingCandidates.push(candidate);
      return;
    }
    await this.addCandidate(candidate);
  }

  async addCandidate(candidate) {
    // A candidate of the ICE generation before a restart can arrive after
    // the restart's description: it belongs to nothing now, so drop it
    // (addIceCandidate would reject it for its unknown ufrag).
    const ufrag = candidate.usernameFragment;
    if (ufrag && !this.pc.remoteDescription?.sdp.includes(`a=ice-ufrag:${ufrag}`)) {
      console.info(`dropped a candidate of an earlier ICE generation from ${this.peer}`);
      return;
    }
    try {
      await this.pc.addIceCandidate(candidate);
    } catch (error) {
      if (!this.ignoreOffer) throw error;
    }
  }

  close() {
    this.closed = true;
    this.cancelRestart();
    this.pc.close();
    this.tile.remove();
  }
}

/** Resolves when gathering completes, or after `limitMs` (an unreachable STUN/TURN server can hold it for long). */
function gatheringComplete(pc, limitMs = Infinity) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      pc.removeEventListener('icegatheringstatechange', check);
      clearTimeout(timer);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === 'complete') done();
    };
    const timer = Number.isFinite(limitMs) ? setTimeout(done, limitMs) : null;
    pc.addEventListener('icegatheringstatechange', check);
  });
}

function makeTile(peer) {
  const tile = document.createElement('figure');
  tile.className = 'tile remote';
  tile.dataset.peer = peer;
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  // Autoplay with sound needs a user gesture first; with ?auto=1 there may
  // be none, so start muted and unmute on the first click.
  video.muted = !navigator.userActivation?.hasBeenActive;
  const caption = document.createElement('figcaption');
  caption.textContent = peer;
  tile.append(video, caption);
  ui.videos.append(tile);
  ui.waiting.hidden = true;
  return tile;
}

function newRemote(peer) {
  const remote = new Remote(peer);
  state.remotes.set(peer, remote);
  state.ended.delete(peer);
  return remote;
}

/** Ends the call with `peer` (if any) and tells the user why. */
function endCall(peer, reason) {
  const remote = state.remotes.get(peer);
  if (!remote) return;
  remote.close();
  state.remotes.delete(peer);
  state.ended.set(peer, reason);
  ui.waiting.hidden = state.remotes.size > 0;
  console.info(`call with ${peer} ended: ${reason}`);
  render();
}

function send(data, to) {
  return state.signal.send(data, { to }).catch((error) => {
    // 404: the peer left while we were still talking to it; its `leave`
    // event is on its way and will remove the tile.
    if (error?.status === 404) console.warn(`not delivered to ${to}: it left`);
    else fail(error);
  });
}

function fail(error) {
  state.error = String(error?.message ?? error);
  console.error(error);
  render();
}

/** Queues a message from `from` behind the ones before it. */
function onSignal(from, data) {
  const previous = state.inbox.get(from) ?? Promise.resolve();
  const handled = previous.then(() => handleSignal(from, data)).catch(fail);
  state.inbox.set(from, handled);
}

async function handleSignal(from, data) {
  if (!data || typeof data !== 'object') return;
  let remote = state.remotes.get(from);
  if (!remote) {
    // Only an offer starts a connection. An answer or candidate for a call
    // that ended (or never started here) is late: a connection made for it
    // would never be negotiated.
    if (data.type !== 'offer') {
      if (data.type === 'answer' || data.type === 'candidate') {
        console.info(`dropped a late ${data.type} from ${from}: no call with it`);
      }
      return;
    }
    if (state.remotes.size >= MAX_REMOTE_PEERS) return; // the mesh is full
    await freshIceServers();
    remote = newRemote(from);
  }
  if (data.type === 'offer' || data.type === 'answer') {
    if (data.type === 'offer' && data.trickle === false) remote.trickle = false;
    await remote.onDescription({ type: data.type, sdp: data.sdp });
  } else if (data.type === 'candidate' && data.ice) {
    await remote.onCandidate(data.ice);
  }
}

/** Signaling with `peer` is possible again: a broken call retries now. */
function signalingBack(peer) {
  const remote = state.remotes.get(peer);
  if (remote?.isBroken()) remote.scheduleRestart(0);
}

async function prepare() {
  ui.prepare.disabled = true;
  try {
    // The client first: its name labels our TURN credential.
    const signal = new SignalClient({ room, peer: ticketClaims.peer, ticket });
    state.signal = signal;
    const [, stream] = await Promise.all([
      loadIceServers(),
      navigator.mediaDevices.getUserMedia({ video: true, audio: true }),
    ]);
    state.stream = stream;
    ui.local.srcObject = stream;

    signal.addEventListener('peers', ({ detail }) => {
      state.members = new Set(detail.peers);
      for (const peer of state.members) signalingBack(peer);
      render();
      if (auto) connect();
    });
    signal.addEventListener('join', ({ detail }) => {
      // Possibly a quiet peer coming back under its name: the call we have
      // with it carries on (no second connection, no second tile).
      state.members.add(detail.peer);
      signalingBack(detail.peer);
      render();
    });
    signal.addEventListener('leave', ({ detail }) => {
      state.members.delete(detail.peer);
      // "expired": it stopped polling, and its media may well still flow,
      // so the call stays (the peer is now quiet). "left", or an older
      // server that gives no reason: it hung up.
      if (detail.reason !== 'expired') endCall(detail.peer, 'it left');
      render();
    });
    signal.addEventListener('message', ({ detail }) => onSignal(detail.from, detail.data));
    // After a reset the server sends a fresh `peers` event; connections
    // that are up carry on, since media does not flow through the server.
    signal.addEventListener('reset', () => render());
    signal.addEventListener('status', ({ detail }) => {
      if (detail.online) for (const peer of state.remotes.keys()) signalingBack(peer);
      // A refused ticket (expired, another room) stops the client: say why
      // rather than look as if it were reconnecting.
      if (detail.fatal) state.error = `signaling stopped: ${detail.error.reason ?? detail.error.message}`;
      render();
    });
    await signal.join();
    ui.connect.disabled = false;
    render();
  } catch (error) {
    ui.prepare.disabled = false;
    fail(ticket && error?.status === 401 ? new Error(`cannot join room ${room}: ${error.reason}`) : error);
  }
}

/** Offers to every member we have no connection with (a broken one restarts by itself). */
async function connect() {
  await freshIceServers();
  for (const peer of state.members) {
    if (state.remotes.has(peer)) continue;
    if (state.remotes.size >= MAX_REMOTE_PEERS) break;
    newRemote(peer).offer().catch(fail);
  }
  render();
}

/** The WHIP and WHEP URLs that reach this page, once it has a name. */
function renderToolUrls(peer) {
  const path = `${encodeURIComponent(room)}/${encodeURIComponent(peer)}`;
  ui.whip.value = `${location.origin}/whip/${path}`;
  ui.whep.value = `${location.origin}/whep/${path}`;
}

function render() {
  const lines = [];
  const signal = state.signal;
  if (signal && ui.whip.value === '') renderToolUrls(signal.peer);
  if (!signal) {
    lines.push('idle: press Prepare');
  } else {
    lines.push(
      `you: ${signal.peer} · signaling ${signal.online ? 'online' : 'reconnecting'} · members: ${
        [...state.members].join(', ') || 'nobody else yet'
      }`,
    );
  }
  for (const [peer, remote] of state.remotes) {
    const connectedIn =
      remote.connectedAt === null ? '' : ` (connected in ${Math.round(remote.connectMs())} ms)`;
    const quiet = isQuiet(peer) ? ' · its signaling is quiet, the call goes on' : '';
    const restarts = remote.restarts ? ` · ICE restarts: ${remote.restarts}` : '';
    lines.push(
      `${peer}: signaling ${remote.pc.signalingState} · ICE ${remote.pc.iceConnectionState}${connectedIn}${restarts}${quiet}`,
    );
  }
  for (const [peer, reason] of state.ended) lines.push(`call with ${peer} ended: ${reason}`);
  if (state.error) lines.push(`error: ${state.error}`);
  ui.status.textContent = lines.join('\n');
}

ui.prepare.addEventListener('click', prepare);
ui.connect.addEventListener('click', () => connect().catch(fail));
document.addEventListener('click', () => {
  for (const video of document.querySelectorAll('.tile.remote video')) video.muted = false;
});

// For tests and for the curious: the state of every connection.
window.signalDemo = {
  state,
  summary() {
    return {
      peer: state.signal?.peer ?? null,
      online: state.signal?.online ?? false,
      members: [...state.members],
      quiet: [...state.remotes.keys()].filter(isQuiet),
      ended: Object.fromEntries(state.ended),
      error: state.error,
      whip: ui.whip.value,
      whep: ui.whep.value,
      remotes: [...state.remotes.values()].map((r) => {
        const video = r.tile.querySelector('video');
        return {
          peer: r.peer,
          signaling: r.pc.signalingState,
          ice: r.pc.iceConnectionState,
          connection: r.pc.connectionState,
          connectMs: r.connectMs(),
          restarts: r.restarts,
          recoveries: r.recoveries,
          candidateErrors: r.candidateErrors,
          videoWidth: video.videoWidth,
          currentTime: video.currentTime,
        };
      }),
    };
  },
  /** The candidate types of each connection's selected pair. */
  async selectedPairs() {
    const pairs = [];
    for (const remote of state.remotes.values()) {
      const stats = await remote.pc.getStats();
      let pair = null;
      stats.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
        // Firefox has no transport stats; it marks the pair itself.
        if (s.type === 'candidate-pair' && s.selected) pair ??= s;
      });
      pairs.push({
        peer: remote.peer,
        local: pair ? (stats.get(pair.localCandidateId)?.candidateType ?? null) : null,
        remote: pair ? (stats.get(pair.remoteCandidateId)?.candidateType ?? null) : null,
      });
    }
    return pairs;
  },
};

render();
if (auto) prepare();
