import { ICE_CORE } from '@ice/core';
import 'reflect-metadata';
console.log(ICE_CORE, process.argv.slice(2));
