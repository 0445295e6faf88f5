/**
 * Test users of Sésame's local OpenID provider (tests/provider/server.mjs).
 *
 * The identities are fixed so that tests can assert on them. Their claims
 * mirror what ProConnect returns from its userinfo endpoint: `email`,
 * `given_name`, `usual_name`, `uid`, `siret` and `idp_id`.
 *
 * Each user is keyed by its login name (the value posted by the login form);
 * `sub` is the stable subject identifier placed in tokens.
 */

/** @typedef {{ sub: string, email: string, email_verified: boolean, given_name: string, usual_name: string, uid: string, siret: string, idp_id: string }} TestUser */

/** @type {Readonly<Record<string, Readonly<TestUser>>>} */
export const USERS = Object.freeze({
  alice: Object.freeze({
    sub: 'alice-7f3a',
    email: 'alice.martin@numerique.gouv.fr',
    email_verified: true,
    given_name: 'Alice',
    usual_name: 'Martin',
    uid: 'alice',
    siret: '13002526500013',
    idp_id: 'fia1v2',
  }),
  bob: Object.freeze({
    sub: 'bob-91c2',
    email: 'bob.durand@interieur.gouv.fr',
    email_verified: true,
    given_name: 'Bob',
    usual_name: 'Durand',
    uid: 'bob',
    siret: '11000201100044',
    idp_id: 'fia2v2',
  }),
  eve: Object.freeze({
    sub: 'eve-5d10',
    email: 'eve@example.com',
    email_verified: true,
    given_name: 'Eve',
    usual_name: 'Dupont',
    uid: 'eve',
    siret: '40483304800022',
    idp_id: 'other-idp',
  }),
});

/** Look a user up by subject identifier (`sub`). */
export function userBySub(sub) {
  return Object.values(USERS).find((user) => user.sub === sub);
}

/**
 * Scope → claims mapping, as ProConnect does: `email` yields `email` and
 * `email_verified`; each other custom scope yields the claim of the same name.
 */
export const SCOPE_CLAIMS = Object.freeze({
  openid: ['sub'],
  email: ['email', 'email_verified'],
  given_name: ['given_name'],
  usual_name: ['usual_name'],
  uid: ['uid'],
  siret: ['siret'],
  idp_id: ['idp_id'],
});
