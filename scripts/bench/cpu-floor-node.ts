// The two processes of scripts/bench/cpu-floor.ts, bundled by it into one plain .cjs so
// that the measured process starts like a bare `node` (no TypeScript loader in its CPU).
// Node builtins only.
//
// `peers`: one process holding the image in memory, answering on one port for the
// receiver's connections: a request (id 6) gets the block as a piece message (id 7); a
// piece message from the receiver gets one request-sized message back, as a peer that
// asked for it would have sent. Its CPU is not the measured one.
//
// `receiver`: the measured process. It does the least an agent's network part must: start,
// connect to every peer, keep `depth` requests outstanding on each, frame the messages,
// gather each piece's blocks, SHA-1 it against the torrent's digest, write it to a file,
// and upload each verified piece once (its blocks to one peer in turn) while receiving.
// Then it prints its CPU (getrusage: every thread, from exec) as one JSON line.
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, openSync, readFileSync, readdirSync, write, writeFileSync } from 'node:fs'
import { connect, createServer, type Socket } from 'node:net'

const MSG_REQUEST = 6
const MSG_PIECE = 7
const REQUEST_LENGTH = 17
const PIECE_HEADER = 13
const SHA1_BYTES = 20
const STATIC_READ_BYTES = 64 * 1024

interface Args { [key: string]: string }

function parseArgs (argv: string[]): Args {
  const args: Args = {}
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) throw new Error(`cpu-floor-node: bad argument ${argv[i]}`)
    args[argv[i].slice(2)] = argv[i + 1]
  }
  return args
}

/** Length-prefixed message framing over a byte stream, one callback per whole message. */
function framer (onMessage: (msg: Buffer) => void, reusedChunks = false): (chunk: Buffer) => void {
  let pending: Buffer | undefined
  return chunk => {
    let buf = pending === undefined ? chunk : Buffer.concat([pending, chunk])
    pending = undefined
    let at = 0
    while (buf.length - at >= 4) {
      const len = buf.readUInt32BE(at)
      if (buf.length - at - 4 < len) break
      onMessage(buf.subarray(at + 4, at + 4 + len))
      at += 4 + len
    }
    // A chunk of the socket's one read buffer is overwritten by the next read: keep a copy.
    if (at < buf.length) pending = reusedChunks && buf === chunk ? Buffer.from(buf.subarray(at)) : buf.subarray(at)
  }
}

function requestMessage (index: number, begin: number, length: number): Buffer {
  const m = Buffer.allocUnsafe(REQUEST_LENGTH)
  m.writeUInt32BE(REQUEST_LENGTH - 4, 0)
  m[4] = MSG_REQUEST
  m.writeUInt32BE(index, 5)
  m.writeUInt32BE(begin, 9)
  m.writeUInt32BE(length, 13)
  return m
}

function sendPiece (socket: Socket, index: number, begin: number, block: Buffer): void {
  const h = Buffer.allocUnsafe(PIECE_HEADER)
  h.writeUInt32BE(9 + block.length, 0)
  h[4] = MSG_PIECE
  h.writeUInt32BE(index, 5)
  h.writeUInt32BE(begin, 9)
  socket.cork()
  socket.write(h)
  socket.write(block)
  socket.uncork()
}

function runPeers (a: Args): void {
  const length = Number(a.length)
  const pieceLength = Number(a['piece-length'])
  const image = randomBytes(length)
  const digests: Buffer[] = []
  for (let at = 0; at < length; at += pieceLength) digests.push(createHash('sha1').update(image.subarray(at, Math.min(length, at + pieceLength))).digest())
  writeFileSync(a.digests, Buffer.concat(digests))
  const server = createServer(socket => {
    socket.setNoDelay(true)
    socket.on('error', () => socket.destroy())
    socket.on('data', framer(msg => {
      if (msg[0] === MSG_REQUEST) {
        const index = msg.readUInt32BE(1)
        const begin = msg.readUInt32BE(5)
        const at = index * pieceLength + begin
        sendPiece(socket, index, begin, image.subarray(at, at + msg.readUInt32BE(9)))
      } else if (msg[0] === MSG_PIECE) {
        socket.write(requestMessage(msg.readUInt32BE(1), msg.readUInt32BE(5), msg.length - 9))
      }
    }))
  })
  server.listen(Number(a.port), a.host, () => process.stdout.write('ready\n'))
  process.on('SIGTERM', () => { server.close(); process.exit(0) })
}

interface Wanted { index: number; begin: number; length: number }

function cpuSeconds (): number {
  const u = process.resourceUsage()
  return (u.userCPUTime + u.systemCPUTime) / 1e6
}

/** CPU-s of each thread of this process by thread name (the kernel's 100 Hz ticks). */
function cpuByThread (): Record<string, number> {
  const byName: Record<string, number> = {}
  for (const tid of readdirSync('/proc/self/task')) {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    byName[name] = (byName[name] ?? 0) + (Number(fields[11]) + Number(fields[12])) / 100
  }
  return byName
}

function runReceiver (a: Args): void {
  const startCpu = cpuSeconds()
  const startWall = Date.now()
  const length = Number(a.length)
  const pieceLength = Number(a['piece-length'])
  const blockLength = Number(a.block)
  const depth = Number(a.depth)
  const peerCount = Number(a.peers)
  const digests = readFileSync(a.digests)
  const pieceCount = digests.length / SHA1_BYTES
  const fd = openSync(a.out, 'w')
  const queue: Wanted[] = []
  for (let index = 0; index < pieceCount; index++) {
    const size = Math.min(pieceLength, length - index * pieceLength)
    for (let begin = 0; begin < size; begin += blockLength) queue.push({ index, begin, length: Math.min(blockLength, size - begin) })
  }
  queue.reverse()
  const buffers = new Map<number, { buf: Buffer; missing: number }>()
  const sockets: Socket[] = []
  let firstByteCpu: number | undefined
  let written = 0
  let uploadedBlocks = 0
  let answeredUploads = 0
  let nextUploadPeer = 0
  let hashFailures = 0

  const finishIfDone = (): void => {
    if (written < pieceCount || answeredUploads < uploadedBlocks) return
    closeSync(fd)
    for (const s of sockets) s.destroy()
    const u = process.resourceUsage()
    process.stdout.write(JSON.stringify({ cpuSeconds: cpuSeconds(), userSeconds: u.userCPUTime / 1e6, systemSeconds: u.systemCPUTime / 1e6, voluntarySwitches: u.voluntaryContextSwitches, threads: cpuByThread(), startCpuSeconds: startCpu, firstByteCpuSeconds: firstByteCpu, wallSeconds: (Date.now() - startWall) / 1000, pieces: pieceCount, uploadedBlocks, hashFailures }) + '\n')
    process.exit(hashFailures === 0 ? 0 : 1)
  }

  const upload = (index: number, piece: Buffer): void => {
    const socket = sockets[nextUploadPeer++ % sockets.length]
    for (let begin = 0; begin < piece.length; begin += blockLength) {
      sendPiece(socket, index, begin, piece.subarray(begin, Math.min(piece.length, begin + blockLength)))
      uploadedBlocks++
    }
  }

  const onBlock = (socket: Socket, index: number, begin: number, block: Buffer): void => {
    firstByteCpu ??= cpuSeconds()
    let entry = buffers.get(index)
    if (entry === undefined) {
      const size = Math.min(pieceLength, length - index * pieceLength)
      entry = { buf: Buffer.allocUnsafe(size), missing: Math.ceil(size / blockLength) }
      buffers.set(index, entry)
    }
    block.copy(entry.buf, begin)
    if (--entry.missing === 0) {
      buffers.delete(index)
      const piece = entry.buf
      if (!createHash('sha1').update(piece).digest().equals(digests.subarray(index * SHA1_BYTES, (index + 1) * SHA1_BYTES))) hashFailures++
      write(fd, piece, 0, piece.length, index * pieceLength, err => {
        if (err !== null) throw err
        written++
        finishIfDone()
      })
      upload(index, piece)
    }
    const next = queue.pop()
    if (next !== undefined) socket.write(requestMessage(next.index, next.begin, next.length))
  }

  const staticReads = a.reads === 'static'
  // Stopped at the harness's timeout: say where the run stood.
  process.on('SIGTERM', () => {
    process.stderr.write(`cpu-floor receiver stopped: ${written} of ${pieceCount} pieces written, ${queue.length} blocks not yet requested, ${answeredUploads} of ${uploadedBlocks} uploaded blocks answered\n`)
    process.exit(1)
  })
  for (let i = 0; i < peerCount; i++) {
    const readBuffer = Buffer.allocUnsafe(staticReads ? STATIC_READ_BYTES : 0)
    const socket: Socket = staticReads
      // Node's static-buffer reads: one buffer per socket, no stream, no allocation per read.
      ? connect({ port: Number(a.port), host: a.host, onread: { buffer: readBuffer, callback: n => { feed(readBuffer.subarray(0, n)); return true } } })
      : connect(Number(a.port), a.host)
    sockets.push(socket)
    socket.setNoDelay(true)
    socket.on('error', err => { throw err })
    socket.on('connect', () => {
      for (let d = 0; d < depth; d++) {
        const next = queue.pop()
        if (next !== undefined) socket.write(requestMessage(next.index, next.begin, next.length))
      }
    })
    const feed = framer(msg => {
      if (msg[0] === MSG_PIECE) onBlock(socket, msg.readUInt32BE(1), msg.readUInt32BE(5), msg.subarray(9))
      else if (msg[0] === MSG_REQUEST) { answeredUploads++; finishIfDone() }
    }, staticReads)
    if (!staticReads) socket.on('data', feed)
  }
}

const args = parseArgs(process.argv.slice(3))
if (process.argv[2] === 'peers') runPeers(args)
else if (process.argv[2] === 'receiver') runReceiver(args)
else throw new Error('cpu-floor-node: first argument must be peers or receiver')
