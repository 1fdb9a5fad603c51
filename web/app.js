// The demo page: a WebRTC call (a mesh of up to 6 peers) signaled through
// signal.js. URL parameters: ?room=NAME (default "demo"),
// ?ice=vanilla|trickle (default trickle), ?auto=1 (prepare on load and call
// whoever is in the room).
//
// Who offers: the peer that presses Connect (with ?auto=1, the newcomer, to
// the peers already in the room), so normally nobody collides. If two peers
// do offer at once, "perfect negotiation" settles it: the polite peer (the
// one with the greater name) rolls back and answers.
import { SignalClient } from './signal.js';

const params = new URLSearchParams(location.search);
const room = params.get('room') || 'demo';
const iceMode = params.get('ice') === 'vanilla' ? 'vanilla' : 'trickle';
const auto = params.get('auto') === '1';
const MAX_REMOTE_PEERS = 5; // a mesh of 6

const $ = (id) => document.getElementById(id);
const ui = {
  videos: $('videos'),
  local: $('local'),
  waiting: $('waiting'),
  prepare: $('prepare'),
  connect: $('connect'),
  status: $('status'),
  sent: $('sdp-sent'),
  received: $('sdp-received'),
};
$('room-name').textContent = room;
$('ice-mode').textContent = iceMode;

const state = {
  signal: null,
  stream: null,
  iceServers: [],
  members: new Set(),
  remotes: new Map(), // peer name -> Remote
  error: null,
};

/** One remote peer: its connection, its tile, and negotiation state. */
class Remote {
  constructor(peer) {
    this.peer = peer;
    this.pc = new RTCPeerConnection({ iceServers: state.iceServers });
    this.polite = state.signal.peer > peer;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.pendingCandidates = [];
    this.tracksAdded = false;
    // When this side started negotiating: the Connect click (our offer) or
    // the arrival of their offer. Connect times are measured from here.
    this.startedAt = performance.now();
    this.connectedAt = null;
    this.tile = makeTile(peer);

    this.pc.onicecandidate = ({ candidate }) => {
      if (iceMode === 'trickle' && candidate) {
        send({ type: 'candidate', ice: candidate.toJSON() }, peer);
      }
    };
    this.pc.ontrack = ({ track, streams }) => {
      const video = this.tile.querySelector('video');
      video.srcObject = streams[0] ?? new MediaStream([track]);
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
      if (this.pc.connectionState === 'failed') removeRemote(peer);
      render();
    };
    this.pc.onsignalingstatechange = render;
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
    this.startedAt = performance.now();
    this.makingOffer = true;
    try {
      await this.pc.setLocalDescription();
    } finally {
      this.makingOffer = false;
    }
    await this.sendDescription();
  }

  /** Vanilla ICE waits for gathering to finish, so the SDP carries every candidate. */
  async sendDescription() {
    if (iceMode === 'vanilla') await gatheringComplete(this.pc);
    const { type, sdp } = this.pc.localDescription;
    ui.sent.value = sdp;
    await send({ type, sdp }, this.peer);
  }

  async onDescription(description) {
    const collision =
      description.type === 'offer' && (this.makingOffer || this.pc.signalingState !== 'stable');
    this.ignoreOffer = !this.polite && collision;
    if (this.ignoreOffer) return;
    ui.received.value = description.sdp;
    await this.pc.setRemoteDescription(description); // rolls back our offer if polite
    for (const candidate of this.pendingCandidates.splice(0)) await this.addCandidate(candidate);
    if (description.type === 'offer') {
      this.startedAt = performance.now();
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
    try {
      await this.pc.addIceCandidate(candidate);
    } catch (error) {
      if (!this.ignoreOffer) throw error;
    }
  }

  close() {
    this.pc.close();
    this.tile.remove();
  }
}

function gatheringComplete(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => {
      if (pc.iceGatheringState === 'complete') {
        pc.removeEventListener('icegatheringstatechange', check);
        resolve();
      }
    };
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

function remoteFor(peer) {
  let remote = state.remotes.get(peer);
  if (!remote) {
    remote = new Remote(peer);
    state.remotes.set(peer, remote);
  }
  return remote;
}

function removeRemote(peer) {
  state.remotes.get(peer)?.close();
  state.remotes.delete(peer);
  ui.waiting.hidden = state.remotes.size > 0;
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

async function onSignal(from, data) {
  if (!data || typeof data !== 'object') return;
  if (data.type === 'offer' && !state.remotes.has(from) && state.remotes.size >= MAX_REMOTE_PEERS) {
    return; // the mesh is full
  }
  try {
    if (data.type === 'offer' || data.type === 'answer') {
      await remoteFor(from).onDescription({ type: data.type, sdp: data.sdp });
    } else if (data.type === 'candidate' && data.ice) {
      await remoteFor(from).onCandidate(data.ice);
    }
  } catch (error) {
    fail(error);
  }
}

async function prepare() {
  ui.prepare.disabled = true;
  try {
    const [config, stream] = await Promise.all([
      fetch('/config').then((r) => r.json()),
      navigator.mediaDevices.getUserMedia({ video: true, audio: true }),
    ]);
    state.iceServers = config.iceServers ?? [];
    state.stream = stream;
    ui.local.srcObject = stream;

    const signal = new SignalClient({ room });
    state.signal = signal;
    signal.addEventListener('peers', ({ detail }) => {
      state.members = new Set(detail.peers);
      render();
      if (auto) connect();
    });
    signal.addEventListener('join', ({ detail }) => {
      state.members.add(detail.peer);
      render();
    });
    signal.addEventListener('leave', ({ detail }) => {
      state.members.delete(detail.peer);
      removeRemote(detail.peer);
      render();
    });
    signal.addEventListener('message', ({ detail }) => onSignal(detail.from, detail.data));
    // After a reset the server sends a fresh `peers` event; connections
    // that are up carry on, since media does not flow through the server.
    signal.addEventListener('reset', () => render());
    signal.addEventListener('status', () => render());
    await signal.join();
    ui.connect.disabled = false;
    render();
  } catch (error) {
    ui.prepare.disabled = false;
    fail(error);
  }
}

/** Offers to every member we have no working connection with. */
function connect() {
  for (const peer of state.members) {
    if (state.remotes.size >= MAX_REMOTE_PEERS && !state.remotes.has(peer)) break;
    const existing = state.remotes.get(peer);
    if (existing && existing.pc.connectionState !== 'failed') continue;
    if (existing) removeRemote(peer);
    remoteFor(peer).offer().catch(fail);
  }
  render();
}

function render() {
  const lines = [];
  const signal = state.signal;
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
    lines.push(
      `${peer}: signaling ${remote.pc.signalingState} · ICE ${remote.pc.iceConnectionState}${connectedIn}`,
    );
  }
  if (state.error) lines.push(`error: ${state.error}`);
  ui.status.textContent = lines.join('\n');
}

ui.prepare.addEventListener('click', prepare);
ui.connect.addEventListener('click', connect);
document.addEventListener('click', () => {
  for (const video of document.querySelectorAll('.tile.remote video')) video.muted = false;
});

// For tests and for the curious: the state of every connection.
window.signalDemo = {
  state,
  summary() {
    return {
      peer: state.signal?.peer ?? null,
      members: [...state.members],
      error: state.error,
      remotes: [...state.remotes.values()].map((r) => {
        const video = r.tile.querySelector('video');
        return {
          peer: r.peer,
          signaling: r.pc.signalingState,
          ice: r.pc.iceConnectionState,
          connectMs: r.connectMs(),
          videoWidth: video.videoWidth,
          currentTime: video.currentTime,
        };
      }),
    };
  },
};

render();
if (auto) prepare();
