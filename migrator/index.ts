// The migrator's surface. So far: the traffic ledger the layers record into.
export { TrafficLedger, type LedgerRow } from './ledger.js';
