// Numbers from a process's environment: defaults, bounds, and a message that names the variable.
import { intEnv } from '../api/env.js';

test('intEnv: unset or empty gives the default; an integer in range is read', () => {
  expect(intEnv({}, 'PORT', 19999, { max: 65535 })).toBe(19999);
  expect(intEnv({ PORT: '' }, 'PORT', 19999, { max: 65535 })).toBe(19999);
  expect(intEnv({ PORT: '2379' }, 'PORT', 19999, { max: 65535 })).toBe(2379);
  expect(intEnv({ MAX_SNAPSHOT: '0' }, 'MAX_SNAPSHOT', 5, { min: 0 })).toBe(0);
});

test('intEnv: anything else stops the process with what to change', () => {
  expect(() => intEnv({ PORT: 'abc' }, 'PORT', 1, { max: 65535 })).toThrow(
    'PORT must be an integer from 1 to 65535, not "abc"',
  );
  expect(() => intEnv({ PORT: '70000' }, 'PORT', 1, { max: 65535 })).toThrow('not "70000"');
  expect(() => intEnv({ N: '-1' }, 'N', 1)).toThrow('N must be an integer ≥ 1, not "-1"');
  expect(() => intEnv({ N: '1.5' }, 'N', 1, { min: 0 })).toThrow('N must be an integer ≥ 0, not "1.5"');
});
