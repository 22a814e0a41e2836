import { describe, expect, it } from 'vitest';
import {
  BrokerRefusedError,
  ConfigError,
  brokerAddressOf,
  brokerRefusalOf,
  brokerVhostOf,
  isTransientError,
} from '@sitesync/protocol';

// The errors as amqplib 2.x makes them (test/src/ops/broker-refusals.test.ts meets the real ones).
const LOGIN_REFUSED = new Error(
  'Handshake terminated by server: 403 (ACCESS-REFUSED) with message "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."',
);
const VHOST_REFUSED = new Error('Expected ConnectionOpenOk; got <ConnectionClose channel:0>');
const QUEUE_REFUSED = Object.assign(
  new Error(
    `Operation failed: BasicConsume; 403 (ACCESS-REFUSED) with message "ACCESS_REFUSED - access to queue 'site.104' in vhost 'sitesync' refused for user 'site-103'"`,
  ),
  { code: 403, classId: 60 },
);

describe('a broker refusing the user is told apart from a broker that cannot be reached', () => {
  it('recognises a refused login, a refused virtual host and a refused operation', () => {
    expect(brokerRefusalOf(LOGIN_REFUSED)).toEqual({
      refusal: 'credentials',
      replyText: expect.stringMatching(/^ACCESS_REFUSED - Login was refused/) as unknown,
    });
    expect(brokerRefusalOf(VHOST_REFUSED)?.refusal).toBe('vhost');
    expect(brokerRefusalOf(QUEUE_REFUSED)).toEqual({
      refusal: 'operation',
      replyText: "ACCESS_REFUSED - access to queue 'site.104' in vhost 'sitesync' refused for user 'site-103'",
    });
  });

  it('is no refusal for a socket error, another channel error or a non-error', () => {
    expect(
      brokerRefusalOf(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5672'), { code: 'ECONNREFUSED' })),
    ).toBeUndefined();
    expect(brokerRefusalOf(Object.assign(new Error('PRECONDITION_FAILED'), { code: 406 }))).toBeUndefined();
    expect(brokerRefusalOf(new Error('Socket closed abruptly during opening handshake'))).toBeUndefined();
    expect(brokerRefusalOf('403')).toBeUndefined();
  });

  it('a refusal is a configuration error on amqp.url: never retried, and it names the user, not the password', () => {
    const url = 'amqp://site-103:s3cret@broker.example:5673/sitesync';
    const err = new BrokerRefusedError('credentials', 'site-103', brokerAddressOf(url), brokerVhostOf(url), 'x');
    expect(err).toBeInstanceOf(ConfigError);
    expect(err).toMatchObject({ key: 'amqp.url', code: 'BROKER_REFUSED', name: 'BrokerRefusedError' });
    expect(isTransientError(err)).toBe(false);
    expect(err.message).toBe(
      'the broker at broker.example:5673 refused the credentials of user site-103: correct the user or password in amqp.url (SYNC_AMQP_URL)',
    );
    expect(err.message).not.toContain('s3cret');
  });

  it('names the broker by host and port, the AMQP default when the URL has none', () => {
    expect(brokerAddressOf('amqp://u:p@rabbit')).toBe('rabbit:5672');
    expect(brokerAddressOf('amqps://u:p@rabbit')).toBe('rabbit:5671');
    expect(brokerVhostOf('amqp://u:p@rabbit/site%2Fa')).toBe('site/a');
    expect(brokerVhostOf('amqp://u:p@rabbit')).toBe('/');
  });
});
