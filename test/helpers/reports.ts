// Reports as an agent sends them: signed with the node's credential (the server refuses
// others). Tests that post reports themselves derive the credentials from the repository.
import { REPORT_AUTH_HEADER, reportAuth } from '../../src/formats/node-auth.ts'
import { NodeCredentials } from '../../src/server/node-credentials.ts'

export interface ReportSigner {
  credential: (node: string) => string
  /** the headers of a report with this body */
  headers: (node: string, body: string) => Record<string, string>
}

/** The signer of a started server's repository (its key is made on first start). */
export async function reportSigner (repoDir: string): Promise<ReportSigner> {
  const credentials = await NodeCredentials.open(repoDir)
  return {
    credential: node => credentials.credential(node),
    headers: (node, body) => ({ 'content-type': 'application/json', [REPORT_AUTH_HEADER]: reportAuth(credentials.credential(node), node, body) })
  }
}

/** POSTs a signed report with fetch. */
export async function postReport (url: string, signer: ReportSigner, node: string, report: object): Promise<Response> {
  const body = JSON.stringify(report)
  return await fetch(`${url}/api/nodes/${node}/events`, { method: 'POST', body, headers: signer.headers(node, body) })
}
