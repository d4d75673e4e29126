// Reports as an agent posts them: signed with the node's credential, asked once per node
// from the server (any node may ask unless the server runs with --require-token).
import { requestCredential } from '../../src/deploy/credential-client.ts'
import { isNodeName } from '../../src/formats/node-name.ts'
import { REPORT_AUTH_HEADER, reportAuth } from '../../src/formats/node-auth.ts'

const credentials = new Map<string, Promise<string>>()

/** Headers of a report `body` from `node` to the server at `url`; an invalid name gets none (the server refuses it first). */
export async function reportHeaders (url: string, node: string, body: string): Promise<Record<string, string>> {
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (!isNodeName(node)) return headers
  const key = `${url} ${node}`
  let credential = credentials.get(key)
  if (credential === undefined) {
    credential = requestCredential(url, { node, macs: [] }, { attempts: 1 })
    credentials.set(key, credential)
  }
  headers[REPORT_AUTH_HEADER] = reportAuth(await credential, node, body)
  return headers
}

/** Posts one report the way the agent does; resolves with the answer's status. */
export async function postReport (url: string, node: string, report: object): Promise<Response> {
  const body = JSON.stringify(report)
  return await fetch(`${url}/api/nodes/${encodeURIComponent(node)}/events`, { method: 'POST', body, headers: await reportHeaders(url, node, body) })
}
