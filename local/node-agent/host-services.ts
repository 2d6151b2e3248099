// Services on the host that pods reach, as kube-proxy would give them: the apiserver (the
// `kubernetes` service, for in-cluster clients) and Temporal. The agent forwards a port on the
// bridge address to the host's loopback, names it in every pod's /etc/hosts and, like the kubelet,
// sets <NAME>_SERVICE_HOST / _PORT in every container.
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';

export interface HostService {
  name: string;
  hosts: string[];
  port: number;
  target: { host: string; port: number };
}

/** `name=host1,host2:port=targetHost:targetPort`, e.g. `kubernetes=kubernetes.default.svc:443=127.0.0.1:6443`. */
export function parseHostService(arg: string): HostService {
  const m = /^([a-z0-9-]+)=([^:=]+):(\d+)=([^:=]+):(\d+)$/.exec(arg);
  if (!m) throw new Error(`--service ${arg}: expected name=host[,host...]:port=targetHost:targetPort`);
  return { name: m[1], hosts: m[2].split(','), port: Number(m[3]), target: { host: m[4], port: Number(m[5]) } };
}

export class HostServices {
  private servers: Server[] = [];
  private readonly sockets = new Set<Socket>();
  private address = '';

  constructor(
    readonly services: HostService[],
    private readonly log: Logger,
  ) {}

  /** Listens on the bridge address; pods reach it through their default route. */
  async start(address: string): Promise<void> {
    this.address = address;
    for (const s of this.services) {
      const server = createServer((down) => {
        const up = connect(s.target.port, s.target.host);
        this.sockets.add(down);
        this.sockets.add(up);
        down.pipe(up).pipe(down);
        const end = () => {
          down.destroy();
          up.destroy();
          this.sockets.delete(down);
          this.sockets.delete(up);
        };
        down.on('error', end);
        up.on('error', end);
        down.on('close', end);
        up.on('close', end);
      });
      await new Promise<void>((res, rej) => {
        server.once('error', rej);
        server.listen(s.port, address, () => res());
      });
      this.servers.push(server);
      this.log.info(
        {
          service: s.name,
          listen: `${address}:${s.port}`,
          target: `${s.target.host}:${s.target.port}`,
          hosts: s.hosts,
        },
        'host service forwarded to pods',
      );
    }
  }

  /** /etc/hosts lines naming the services. */
  hostsLines(): string {
    return this.address ? this.services.map((s) => `${this.address}\t${s.hosts.join(' ')}\n`).join('') : '';
  }

  /** The kubelet's service environment variables. */
  env(): Record<string, string> {
    if (!this.address) return {};
    return Object.fromEntries(
      this.services.flatMap((s) => {
        const n = s.name.toUpperCase().replace(/-/g, '_');
        return [
          [`${n}_SERVICE_HOST`, s.hosts[0]],
          [`${n}_SERVICE_PORT`, String(s.port)],
        ];
      }),
    );
  }

  async stop(): Promise<void> {
    const closed = Promise.all(this.servers.map((s) => new Promise<void>((res) => s.close(() => res()))));
    for (const sock of this.sockets) sock.destroy();
    await closed;
    this.servers = [];
  }
}
