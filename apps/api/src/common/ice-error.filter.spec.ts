import { httpStatusOf } from './ice-error.filter';

describe('httpStatusOf', () => {
  it('maps user errors to 400 and missing files to 404', () => {
    expect(httpStatusOf('CONFIG_INVALID')).toBe(400);
    expect(httpStatusOf('INPUT_INVALID')).toBe(400);
    expect(httpStatusOf('FILE_NOT_FOUND')).toBe(404);
    expect(httpStatusOf('BACKEND_UNAVAILABLE')).toBe(503);
  });
});
