// The manager's Prometheus endpoint (pj agent --metrics ADDR:PORT): GET
// /metrics answers the registry in the text format; anything else is a 404.
import { createServer, type Server } from 'node:http';
import type { Metrics } from '../common/metrics.js';

export async function serveMetrics(metrics: Metrics, address: string, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics is served here\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(metrics.text());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, () => resolve());
  });
  return server;
}
