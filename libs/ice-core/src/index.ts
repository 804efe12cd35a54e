export * from './errors';
export * from './backend/tf-backend.service';
export * from './weights/state-dict';
