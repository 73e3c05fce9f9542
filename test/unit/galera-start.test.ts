// A failed MariaDB start in the Galera phase explains itself: the error names
// the host and the command, quotes what systemctl said, carries the unit's
// last journal lines and says what to do (apply again). Seen in the lab: a
// joiner's first `systemctl restart mariadb` failed with "a fatal signal was
// delivered to the control process" and the message alone did not say why.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryHost, ok } from '../../src/transport/memory.js';
import { sh } from '../../src/transport/quote.js';
import { startMariadb } from '../../src/phases/galera.js';

test('a failed systemctl restart mariadb carries the journal and the way on', async () => {
  const h = new MemoryHost({ name: 'infra2' });
  h.handle(/^systemctl restart mariadb$/, () => ({ code: 1, stdout: '', stderr: 'Job for mariadb.service failed because a fatal signal was delivered to the control process.\nSee "systemctl status mariadb.service" for details.\n' }));
  h.handle(/^journalctl -u mariadb -n 40/, () => ok('2026-12-01T18:40:01+0000 infra2 mariadbd[812]: WSREP_SST: [ERROR] Possible timeout in receiving first data from donor in gtid stage\n2026-12-01T18:40:02+0000 infra2 systemd[1]: mariadb.service: Control process exited, code=killed, status=9/KILL\n'));
  await assert.rejects(startMariadb(h, sh`systemctl restart mariadb`, 'systemctl restart mariadb'), (e: Error) => {
    assert.match(e.message, /^infra2: systemctl restart mariadb exited with 1; last seen: Job for mariadb\.service failed because a fatal signal was delivered to the control process\./);
    assert.match(e.message, /last lines of the journal:\n {4}.*Possible timeout in receiving first data from donor/);
    assert.match(e.message, /status=9\/KILL/);
    assert.match(e.message, /hint: look at `journalctl -u mariadb` on infra2, then run apply again/);
    return true;
  });
});

test('a start that succeeds reads no journal', async () => {
  const h = new MemoryHost({ name: 'infra1' });
  const seen: string[] = [];
  h.handle(/^systemctl restart mariadb$/, (c) => (seen.push(c.text), ok()));
  h.handle(/^journalctl/, (c) => (seen.push(c.text), ok()));
  await startMariadb(h, sh`systemctl restart mariadb`, 'systemctl restart mariadb');
  assert.deepEqual(seen, ['systemctl restart mariadb']);
});
