export const ICE_CORE = 'ice-core';
