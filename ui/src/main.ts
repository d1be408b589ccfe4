import "./app.css";
import { mount } from "svelte";
import App from "./App.svelte";
import { takeTokenFromUrl } from "./lib/api/client";
import { router } from "./lib/router.svelte";

takeTokenFromUrl();
router.sync();
const app = mount(App, { target: document.getElementById("app")! });
export default app;
