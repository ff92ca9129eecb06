export { DelegatingStore } from '../../src/store/delegating.ts';
